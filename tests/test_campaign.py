"""The CPU training campaign: the wsd schedule, the CPU runtime choices, held-out bits/byte across
tokenizers, and `diffucode campaign` end to end on a tiny run (measure, record, promote or keep)."""

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch

from diffucode import checkpoint
from diffucode.errors import ConfigError
from diffucode.training import cli as train_cli
from diffucode.training import config, cpu_runtime, loop, schedule
from diffucode_evals import campaign, heldout
from tests.benchdata import DATA
from tests.training_kit import TRAIN, prepare_run


# -- schedule -----------------------------------------------------------------------------------------------
def test_wsd_warms_up_each_call_holds_the_peak_and_decays_over_the_calls_last_share():
    cfg = config.TrainConfig(lr=1e-3, warmup_steps=10, min_lr_frac=0.1, schedule="wsd", decay_frac=0.2)
    lrs = [loop.lr_at(s, cfg, 1100, call_start=100) for s in range(100, 1101)]  # a call from step 100 to 1100
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # warmup again at the call's start
    assert all(lr == pytest.approx(1e-3) for lr in lrs[10:800])  # stable until the last 20 % of the call
    assert all(a >= b for a, b in zip(lrs[800:], lrs[801:])) and lrs[850] < 1e-3
    assert lrs[-1] == pytest.approx(1e-4)  # ends at the floor: a decayed model
    # by time: half of the decay window left -> half-way between the peak and the floor
    assert loop.lr_at(500, cfg, 10**9, call_start=0, decay_left=0.5) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert loop.lr_at(500, cfg, 10**9, call_start=0, decay_left=-3.0) == pytest.approx(1e-4)
    assert schedule.decay_left_by_time(90.0, call_start=0.0, call_end=100.0, decay_frac=0.2) == pytest.approx(0.5)


def test_the_decay_share_by_time_never_rises_when_the_stop_moves_later(monkeypatch):
    clock = loop.Clock(t_start=0.0, time_budget=1000.0, margin=0.0, save_est=0.0, eval_est=100.0, t_slice=0.0)
    monkeypatch.setattr(loop.time, "time", lambda: 850.0)
    first = clock.decay_left(0.0, 0.2)  # stop at 900: window 180 s, 50 s left
    assert first == pytest.approx(50 / 180)
    clock.eval_est = 10.0  # the last evaluation ran faster than planned: the stop moves to 990
    assert clock.decay_left(0.0, 0.2) == pytest.approx(first)  # the learning rate does not climb back
    monkeypatch.setattr(loop.time, "time", lambda: 960.0)
    assert clock.decay_left(0.0, 0.2) == pytest.approx(30 / 198)  # and keeps falling afterwards


def test_the_cosine_schedule_is_unchanged_and_bad_settings_are_refused():
    cfg = config.TrainConfig(lr=1e-3, warmup_steps=10, min_lr_frac=0.1)
    assert loop.lr_at(55, cfg, 100) == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # the cosine's midpoint
    for bad in (dict(schedule="step"), dict(decay_frac=0.0), dict(precision="fp8"), dict(threads=-1)):
        with pytest.raises(ConfigError):
            config.TrainConfig(**bad)


# -- CPU runtime --------------------------------------------------------------------------------------------
def test_cpu_choices(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert cpu_runtime.choose_precision("fp32", cpu, 64)[0] == "fp32"
    assert cpu_runtime.choose_precision("bf16", cpu, 64)[0] == "bf16"
    assert cpu_runtime.choose_precision("auto", cuda, 64)[0] == "bf16"
    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: True)
    assert cpu_runtime.choose_precision("auto", cpu, 64) == ("bf16", "the CPU has bf16 dot products")
    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: False)
    assert cpu_runtime.choose_precision("auto", cpu, 64)[0] == "fp32"
    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: None)  # no /proc/cpuinfo: measured
    monkeypatch.setattr(cpu_runtime, "bf16_speedup", lambda d: 1.05)
    assert cpu_runtime.choose_precision("auto", cpu, 64) == ("fp32", "bf16 matmul measured 1.05x fp32")
    monkeypatch.setattr(cpu_runtime, "bf16_speedup", lambda d: 2.0)
    assert cpu_runtime.choose_precision("auto", cpu, 64)[0] == "bf16"
    assert cpu_runtime.compile_enabled("auto", cpu, 50_000) is False  # tiny models: the build costs more than it saves
    has_cc = any(shutil.which(c) for c in ("cc", "gcc", "g++"))
    assert cpu_runtime.compile_enabled("auto", cpu, 5_000_000) is has_cc
    monkeypatch.setattr(cpu_runtime.shutil, "which", lambda name: None)
    assert cpu_runtime.compile_pays(cpu, 5_000_000) == (False, "no C compiler found")
    assert cpu_runtime.cpu_threads(1) >= 1 and cpu_runtime.cpu_threads(1000) == 1


# -- held-out bits per byte ---------------------------------------------------------------------------------
def test_chunks_are_whole_lines_within_the_byte_limit():
    text = "".join(f"line {i} é\n" for i in range(200))
    parts = heldout.chunks([text, "   \n\n"], chunk_bytes=100)
    assert "".join(parts) == text  # the blank text is dropped, nothing else is lost
    assert all(len(p.encode()) <= 100 and p.endswith("\n") for p in parts)


def test_bits_per_byte_is_an_elbo_in_bits_per_byte(tiny_model_dir):
    ck = checkpoint.load(tiny_model_dir)
    texts = heldout.common_chunks([Path(heldout.__file__).read_text()], [ck], n=12)
    assert 4 <= len(texts) <= 12 and all(len(ck.tokenizer.encode(t)) <= ck.model.cfg.max_seq_len for t in texts)
    bpb = heldout.bits_per_byte(ck, texts)
    assert bpb == pytest.approx(heldout.bits_per_byte(ck, texts, batch=5), rel=1e-6)  # independent of batching
    # an untrained model predicts about uniformly: ~log2(V) bits for each token (the 1/t weights make the
    # ELBO an estimate of the whole text's code length), i.e. log2(V) * tokens / bytes
    n_tok = sum(len(ck.tokenizer.encode(t)) for t in texts)
    n_bytes = sum(len(t.encode()) for t in texts)
    uniform = torch.log2(torch.tensor(float(ck.tokenizer.vocab_size))).item() * n_tok / n_bytes
    assert 0.7 * uniform < bpb < 1.5 * uniform


# -- diffucode campaign -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = prepare_run(tmp_path_factory.mktemp("campaign"))
    assert train_cli.main(["--out", str(out), "--max-steps", "20", "--eval-every", "0", "--schedule", "wsd",
                           *TRAIN]) == 0
    return out


def parse(argv):
    p = argparse.ArgumentParser()
    campaign.register(p.add_subparsers())
    return p.parse_args(["campaign", *argv])


def test_train_flags_resume_start_from_the_shipped_model_or_a_new_shape(tmp_path):
    new = campaign.train_argv(tmp_path / "r", 2.5, Path("W"), Path("D"), [], tmp_path / "r" / "export")
    assert new[:6] == ["--out", str(tmp_path / "r"), "--schedule", "wsd", "--time-budget", "9000"]
    assert new[-4:] == ["--bench-data", "D", "--init-from", "W"]
    shaped = campaign.train_argv(tmp_path / "r", 1, Path("W"), Path("D"), ["--d-model", "256"], tmp_path / "e")
    assert "--init-from" not in shaped and shaped[-2:] == ["--d-model", "256"]
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text("{}")
    resumed = campaign.train_argv(tmp_path / "r", 1, Path("W"), Path("D"), [], tmp_path / "e")
    assert "--init-from" not in resumed and "--bench-data" not in resumed  # data settings are fixed once a run exists


def test_the_new_model_replaces_the_shipped_one_only_when_better_on_both():
    old = campaign.Measured(2.0, 0.03, 0.0, 1033, "o", 1.0)
    assert campaign.decide(campaign.Measured(1.5, 0.05, 0.9, 1033, "n", 1.0), old, partial=False) is None
    assert "held-out" in campaign.decide(campaign.Measured(2.1, 0.05, 0.9, 1033, "n", 1.0), old, partial=False)
    assert "pass@1" in campaign.decide(campaign.Measured(1.5, 0.03, 0.9, 1033, "n", 1.0), old, partial=False)
    assert "--limit" in campaign.decide(campaign.Measured(1.5, 0.05, 0.9, 5, "n", 1.0), old, partial=True)


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "human-eval-infilling").is_dir(),
                    reason="needs the HumanEval-Infilling data (shared/data or $DIFFUCODE_EVAL_DATA)")
def test_campaign_measures_records_and_promotes(trained, tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    shipped = tmp_path / "shipped"
    shutil.copytree(tiny_model_dir, shipped)
    before = (shipped / "model.safetensors").read_bytes()
    args = parse(["--run", str(run), "--hours", "0", "--shipped", str(shipped), "--data-dir", str(DATA), "--limit", "3",
                  "--heldout-chunks", "8"])
    assert campaign.run(args) == 0
    out = capsys.readouterr().out
    assert "| held-out bits/byte |" in out and "kept " in out and "--limit" in out
    assert (shipped / "model.safetensors").read_bytes() == before  # a partial measurement never promotes
    ev = json.loads((run / "export" / "config.json").read_text())["evaluation"]
    assert ev["single_line_tasks"] == 3 and ev["promoted"] is False and ev["compared_with"]["heldout_bpb"] > 0
    assert ev["single_line_fill_bpb"] > 0 and ev["compared_with"]["single_line_fill_bpb"] > 0
    card = (run / "export" / "README.md").read_text()
    assert "| single-line right lines in place, bits/byte |" in card
    # --prepare-only, then training
    assert card.count(campaign.EVAL_SECTION) == 1 and "Training so far: 2 call(s)" in card
    assert campaign.run(args) == 0  # again: both models' single-line runs are read, not repeated
    assert capsys.readouterr().out.count("measured before (same weights, same tasks)") == 2
    campaign.record(run / "export", campaign.Measured(1.0, 0.5, 1.0, 3, "n", 1.0),
                    campaign.Measured(2.0, 0.0, 0.0, 3, "o", 1.0), None)
    assert (run / "export" / "README.md").read_text().count(campaign.EVAL_SECTION) == 1  # replaced, not appended
    campaign.promote(run / "export", shipped)
    assert (shipped / "model.safetensors").read_bytes() != before and not (tmp_path / "shipped.old").exists()
    assert checkpoint.load(shipped).meta["evaluation"]["promoted"] is True


def test_campaign_refuses_bad_input_in_one_line(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError):
        campaign.run(parse(["--run", str(tmp_path), "--hours", "-1", "--shipped", str(tiny_model_dir),
                            "--data-dir", str(tmp_path)]))

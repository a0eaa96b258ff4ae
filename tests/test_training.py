"""The training loop on CPU (diffucode/training/): loss falls, resume is exact, the time budget is kept,
export writes a loadable model folder, every call is recorded, two DDP ranks (gloo) agree, the
compiled step runs on the CPU. Everything runs the `tiny` preset on a few stdlib modules."""

import argparse
import json
import math
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffucode import checkpoint
from diffucode.errors import ConfigError
from diffucode.model import DiffusionTransformer, ModelConfig, preset
from diffucode.training import card, config, cpu_runtime, flops, loop, objective
from diffucode.training import cli as train_cli
from diffucode.training.corpus import DataConfig
from tests.training_kit import TRAIN, prepare_run

@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A run folder with data and tokenizer only (made through the CLI with --prepare-only)."""
    return prepare_run(tmp_path_factory.mktemp("train"))


def fresh(prepared: Path, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    shutil.copytree(prepared, out)
    return out


def records(out: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r.get("kind") == kind]


def test_hidden_states_match_the_model_forward():
    torch.manual_seed(0)
    m = DiffusionTransformer(preset("tiny", vocab_size=97)).eval()
    ids = torch.randint(0, 97, (2, 16))
    torch.testing.assert_close(m.lm_head(objective.hidden_states(m, ids)), m(ids))
    sel = torch.tensor([0, 5, 17, 31])
    tg = torch.randint(0, 97, (4,))
    total, ce = objective.head_loss(m.lm_head.weight, objective.hidden_states(m, ids), sel, tg, torch.ones(4))
    ref = torch.nn.functional.cross_entropy(m(ids).flatten(0, 1)[sel], tg, reduction="none")
    torch.testing.assert_close(ce, ref)
    torch.testing.assert_close(total, ref.sum())


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = config.TrainConfig(lr=1e-3, warmup_steps=10, min_lr_frac=0.1)
    lrs = [loop.lr_at(s, cfg, 100) for s in range(120)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[100] == pytest.approx(1e-4) and lrs[119] == pytest.approx(1e-4)


def test_cli_has_help_for_every_flag():
    parser = argparse.ArgumentParser(prog="diffucode")
    sub = parser.add_subparsers()
    train_cli.register(sub)
    p = sub.choices["train"]
    for action in p._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, action.option_strings
    args = parser.parse_args(["train", "--out", "x", "--preset", "tiny", "--time-budget", "540",
                              "--hole-menu", "8", "16"])
    assert args.func is train_cli.run and args.hole_menu == [8, 16] and args.time_budget == 540
    assert "--time-budget" in p.format_help()


def test_smoke_run_loss_falls(prepared, tmp_path):
    out = fresh(prepared, tmp_path, "smoke")
    assert train_cli.main(["--out", str(out), "--max-steps", "30", "--eval-every", "30", "--log-every", "10",
                           *TRAIN]) == 0
    evals = records(out, "eval")
    assert [e["step"] for e in evals] == [0, 30]
    assert evals[-1]["elbo_bpt"] < evals[0]["elbo_bpt"] - 0.4  # held-out ELBO falls (~0.8 bits/token measured)
    assert evals[-1]["ce_t50_bpt"] < evals[0]["ce_t50_bpt"]
    steps = records(out, "train")
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert {"loss_uniform", "loss_infill"} <= set(steps[-1])
    state = json.loads((out / "ckpt" / "state.json").read_text())
    assert state["step"] == 30 and state["tokens"] == 30 * 8 * 64


def test_resume_continues_exactly(prepared, tmp_path):
    a = fresh(prepared, tmp_path, "a")
    b = fresh(prepared, tmp_path, "b")
    common = ["--max-steps", "6", "--eval-every", "0", "--log-every", "1", *TRAIN, "--eval-rows", "0"]
    assert train_cli.main(["--out", str(a), *common]) == 0
    assert train_cli.main(["--out", str(b), "--steps", "3", *common]) == 0
    assert json.loads((b / "ckpt" / "state.json").read_text())["step"] == 3
    assert train_cli.main(["--out", str(b), *common]) == 0
    la = {r["step"]: r["loss"] for r in records(a, "train")}
    lb = {r["step"]: r["loss"] for r in records(b, "train")}
    assert sorted(lb) == [1, 2, 3, 4, 5, 6]
    for s in range(1, 7):
        assert lb[s] == pytest.approx(la[s], rel=1e-6), s
    for name in ("model.safetensors", "state.safetensors"):
        ta, tb = load_file(str(a / "ckpt" / name)), load_file(str(b / "ckpt" / name))
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (name, k)


def test_time_budget_stops_and_saves(prepared, tmp_path):
    out = fresh(prepared, tmp_path, "budget")
    t0 = time.time()
    assert train_cli.main(["--out", str(out), "--max-steps", "100000", "--time-budget", "4", "--budget-margin", "0.5",
                       "--eval-every", "0", "--log-every", "10", *TRAIN, "--eval-rows", "0"]) == 0
    assert time.time() - t0 < 4.5
    state = json.loads((out / "ckpt" / "state.json").read_text())
    assert state["step"] > 0 and state["max_steps"] == 100000
    assert "time_budget" in json.dumps(state) or state["step"] < 100000
    checkpoint.load(out / "ckpt")  # a complete model folder


def test_changing_a_fixed_setting_is_refused(prepared, tmp_path, capsys):
    out = fresh(prepared, tmp_path, "fixed")
    assert train_cli.main(["--out", str(out), "--preset", "mini", "--prepare-only"]) == 2
    assert "cannot change" in capsys.readouterr().err


def test_export_writes_a_loadable_small_model(prepared, tmp_path):
    out = fresh(prepared, tmp_path, "exp")
    dest = tmp_path / "weights" / "default"
    assert train_cli.main(["--out", str(out), "--max-steps", "4", "--eval-every", "0", "--log-every", "2",
                       "--export", str(dest), *TRAIN]) == 0
    ck = checkpoint.load(dest)
    assert ck.model.cfg.d_model == 64
    cfg = json.loads((dest / "config.json").read_text())
    assert cfg["torch_dtype"] == "float16" and cfg["infill"]["pad_tail"] is True
    assert cfg["training"]["steps"] == 4
    assert all(p.stat().st_size < 15 * 10**6 for p in dest.iterdir())
    card = (dest / "README.md").read_text()
    assert "elbo_bpt" in card and "diffucode train" in card
    from diffucode.loading import load_engine

    assert load_engine(dest).pad_tail


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_compiled_bf16_run_and_resume(prepared, tmp_path):
    """On a GPU machine: `pytest -m gpu tests/test_training.py` (compile, bf16 autocast, fused AdamW, workers)."""
    out = fresh(prepared, tmp_path, "gpu")
    gpu = ([a for a in TRAIN if a not in ("--no-compile", "cpu", "--device")]
           + ["--device", "cuda", "--compile", "--num-workers", "2"])
    assert train_cli.main(["--out", str(out), "--max-steps", "8", "--steps", "4", "--eval-every", "4",
                           "--log-every", "1", *gpu]) == 0
    assert train_cli.main(["--out", str(out), "--max-steps", "8", "--eval-every", "4", "--log-every", "1", *gpu]) == 0
    steps = records(out, "train")
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert all(r["loss"] == r["loss"] and r["loss"] < 20 for r in steps)  # finite
    assert records(out, "eval")[-1]["step"] == 8
    state = load_file(str(out / "ckpt" / "state.safetensors"))
    assert any(k.endswith(".exp_avg") for k in state)


def test_train_flops_count_the_output_head_only_where_the_loss_is_taken():
    mc = ModelConfig(vocab_size=10, d_model=4, n_layers=2, n_heads=2, ffn_hidden=8, max_seq_len=8)
    # 380 parameters, 40 of them the tied embedding / head (10 x 4): 340 in the blocks.
    # 6 * 340 * 16 tokens = 32640; attention 12 * 2 layers * 4 * 8 = 768 per token, * 16 = 12288;
    # head 6 * 40 * 5 positions = 1200.
    assert flops.train_flops(mc, 380, seq_len=8, tokens=16, head_positions=5) == 32640 + 12288 + 1200
    # An untied head is a second 10 x 4 matrix among the parameters, not in the blocks.
    untied = ModelConfig(vocab_size=10, d_model=4, n_layers=2, n_heads=2, ffn_hidden=8, max_seq_len=8,
                         tie_embeddings=False)
    assert flops.train_flops(untied, 420, seq_len=8, tokens=16, head_positions=5) == 32640 + 12288 + 1200
    # The usual 6 N per token overstates a step whose head runs on 5 of the 16 positions.
    assert flops.train_flops(mc, 380, seq_len=8, tokens=16, head_positions=5) < (6 * 380 + 768) * 16
    assert flops.train_flops(mc, 380, seq_len=8, tokens=16, head_positions=16) == (6 * 380 + 768) * 16


def test_compile_modes():
    p = argparse.ArgumentParser()
    config.add_arguments(p)

    def flag(*argv):
        return p.parse_args(["--out", "x", *argv]).compile

    assert flag() is None and flag("--compile") == "on" and flag("--no-compile") == "off"
    assert [flag("--compile", m) for m in ("auto", "on", "off")] == ["auto", "on", "off"]
    assert config.TrainConfig().compile == "auto"
    # old run.json
    assert config.TrainConfig(compile=True).compile == "auto" and config.TrainConfig(compile=False).compile == "off"
    with pytest.raises(ConfigError):
        config.TrainConfig(compile="maybe")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [cpu_runtime.compile_enabled(m, cpu) for m in ("auto", "on", "off")] == [False, True, False]
    assert [cpu_runtime.compile_enabled(m, cuda) for m in ("auto", "on", "off")] == [True, True, False]


def test_steps_that_plan_the_schedule_are_synchronised(prepared, tmp_path, monkeypatch):
    """The --train-seconds plan uses the first 20 step times: each of those steps waits for the device."""
    out = fresh(prepared, tmp_path, "plan")
    synced = []
    monkeypatch.setattr(loop, "_device_sync", lambda dev: synced.append(dev))
    assert train_cli.main(["--out", str(out), "--train-seconds", "600", "--steps", "25", "--log-every", "1000",
                       "--eval-every", "0", *TRAIN, "--eval-rows", "0"]) == 0
    state = json.loads((out / "ckpt" / "state.json").read_text())
    assert state["step"] == 25 and state["max_steps"] > 25  # planned after step 20
    assert len(synced) == 20  # steps 1-20 (planning), none after


def test_smoke_runs_without_benchmark_data(prepared, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv("DIFFUCODE_EVAL_DATA", str(missing))
    out = tmp_path / "smoke"
    assert train_cli.main(["--out", str(out), "--smoke", "--bench-data", str(missing),
                           "--sources", str(prepared.parent / "src"),
                           "--max-steps", "2", "--eval-rows", "0", "--data-workers", "1", "--device", "cpu"]) == 0
    assert "decontamination is OFF" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["data"]["decontaminate"] is False
    corpus = json.loads((out / "data" / "corpus.json").read_text())
    assert corpus["bench_data"] is None and corpus["decontamination_ngrams"] == 0
    assert json.loads((out / "ckpt" / "state.json").read_text())["step"] == 2
    # With the data present, a smoke run still decontaminates.
    (tmp_path / "bench" / "human-eval").mkdir(parents=True)
    logs = []
    cfg = DataConfig(bench_data=str(tmp_path / "bench"))
    assert train_cli.smoke_data(cfg, logs.append) == cfg and not logs


def test_every_training_call_is_recorded_and_exported(prepared, tmp_path):
    out = fresh(prepared, tmp_path, "calls")
    dest = tmp_path / "export"
    first = ["--out", str(out), "--max-steps", "4", "--steps", "2", "--eval-every", "0", *TRAIN, "--eval-rows", "0"]
    second = ["--out", str(out), "--max-steps", "4", "--eval-every", "0", "--log-every", "1", *TRAIN,
              "--eval-rows", "0", "--export", str(dest)]
    assert train_cli.main(first) == 0 and train_cli.main(second) == 0
    created = json.loads((out / "run.json").read_text())["command"]  # the fixture's --prepare-only call
    assert "--prepare-only" in created and "--vocab-size" in created
    want = [{"step": 0, "argv": created}, {"step": 0, "argv": ["diffucode", "train", *first], "device": "cpu"},
            {"step": 2, "argv": ["diffucode", "train", *second], "device": "cpu"}]
    assert json.loads((out / "ckpt" / "state.json").read_text())["commands"] == want
    training = json.loads((dest / "config.json").read_text())["training"]
    assert training["commands"] == want and training["command"] == created
    card = (dest / "README.md").read_text()
    from diffucode.training.card import portable

    for n, call in enumerate(want, 1):  # the machine's own paths shortened (card.portable)
        assert f"# call {n} of 3, from step {call['step']}\n" + " ".join(map(portable, call["argv"])) in card
    assert str(out) not in card and portable(str(out)).startswith((".../", "~"))
    assert "on cpu over 2 call(s)" in card and "**Status: interim.**" in card
    from diffucode.checkpoint import read_config
    from diffucode.errors import CheckpointError

    with pytest.raises(CheckpointError, match="--export-only"):  # --model RUN: the run is not the model
        read_config(out)


def test_the_interim_label_counts_every_call_and_the_starting_models():
    # Trained only on CPUs, in any call or in the model it started from: interim. One GPU call anywhere: not.
    cpu = {"commands": [{"step": 0, "argv": ["a"], "device": "cpu"}, {"step": 5, "argv": ["b"], "device": "cpu"}]}
    gpu_then_cpu = {"commands": [{"step": 0, "argv": ["a"], "device": "1 x NVIDIA H100"},
                                 {"step": 5, "argv": ["b"], "device": "cpu"}], "device": "cpu"}
    assert "interim" in card.cpu_status(cpu, {})
    assert card.cpu_status(gpu_then_cpu, {}) == ""
    assert card.training_devices(gpu_then_cpu) == ["1 x NVIDIA H100", "cpu"]
    from_gpu_model = {"init_from": {"folder": "m",
                                    "commands": [{"step": 0, "argv": ["x"], "device": "1 x NVIDIA H100"}]}}
    assert card.cpu_status(cpu, from_gpu_model) == ""
    assert "interim" in card.cpu_status({"device": "cpu"}, {})  # a checkpoint from before calls recorded devices
    assert card.cpu_status({}, {}) == ""  # nothing recorded: no claim either way
    assert card.millions(None) == "?" and card.millions(2_500_000) == "2.5"
    text = card.lineage_text({"folder": "m", "steps": 3})  # a starting model that recorded no tokens or time
    assert "(? M tokens, ? min)" in text and "0.0 M" not in text


def test_a_run_started_from_a_model_keeps_that_models_training_in_its_card(prepared, tmp_path):
    """--init-from: the export's config.json and card name the starting model's own steps and calls, two
    generations deep, so a model resumed from the embedded one still says how all of it was trained."""
    first, gen1 = fresh(prepared, tmp_path, "gen1"), tmp_path / "model1"
    argv1 = ["--out", str(first), "--max-steps", "2", "--eval-every", "0", *TRAIN, "--eval-rows", "0",
             "--export", str(gen1)]
    assert train_cli.main(argv1) == 0
    src = json.loads((prepared / "run.json").read_text())["data"]["sources"]  # the fixture's sources
    gen2, gen3 = tmp_path / "model2", tmp_path / "model3"
    for n, (start, dest) in enumerate(((gen1, gen2), (gen2, gen3)), 2):
        argv = ["--out", str(tmp_path / f"run{n}"), "--init-from", str(start), "--sources", *src, "--no-decontaminate",
                "--data-workers", "1", "--max-steps", "3", "--eval-every", "0", *TRAIN, "--eval-rows", "0",
                "--export", str(dest)]
        assert train_cli.main(argv) == 0
    training = json.loads((gen3 / "config.json").read_text())["training"]
    parent = training["init_from"]
    assert parent["folder"] == str(gen2) and parent["steps"] == 3
    assert parent["init_from"]["folder"] == str(gen1) and parent["init_from"]["steps"] == 2
    assert parent["init_from"]["commands"][-1]["argv"] == ["diffucode", "train", *argv1]
    card = (gen3 / "README.md").read_text()
    assert f"started from the weights of `{gen2}`, trained 3 steps" in card
    assert f"started from the weights of `{gen1}`, trained 2 steps" in card
    assert " ".join(argv1) in card
    plain = (gen1 / "README.md").read_text()
    assert "started from the weights" not in plain
    run3 = tmp_path / "run3"  # a later call of the same run keeps the lineage
    assert train_cli.main(["--out", str(run3), "--max-steps", "4", "--eval-every", "0", *TRAIN,
                           "--eval-rows", "0"]) == 0
    assert json.loads((run3 / "run.json").read_text())["init_from"]["folder"] == str(gen2)


def test_a_folder_with_another_tools_run_json_is_refused(tmp_path, capsys):
    out = tmp_path / "eval-run"
    out.mkdir()
    (out / "run.json").write_text('{"taskset": "humaneval"}')
    assert train_cli.main(["--out", str(out), "--prepare-only", *TRAIN]) == 2
    assert "did not write" in capsys.readouterr().err and sorted(p.name for p in out.iterdir()) == ["run.json"]


@pytest.mark.slow
def test_compiled_cpu_run_and_resume(prepared, tmp_path, monkeypatch, capsys):
    """--compile on forces the compiled training step on the CPU (inductor + gcc); ~40 s, mostly compiling."""
    out = fresh(prepared, tmp_path, "compiled")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    cpu = [a for a in TRAIN if a not in ("--no-compile", "--quiet")] + ["--compile", "on", "--eval-rows", "0"]
    common = ["--out", str(out), "--max-steps", "4", "--eval-every", "0", "--log-every", "1", *cpu]
    assert train_cli.main([*common, "--steps", "2"]) == 0
    assert train_cli.main(common) == 0
    assert capsys.readouterr().out.count("torch.compile on (--compile on)") == 2
    steps = records(out, "train")
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) and r["loss"] < 20 for r in steps)
    assert any((tmp_path / "inductor").rglob("*.py"))  # inductor generated kernels: the step was compiled
    assert json.loads((out / "ckpt" / "state.json").read_text())["step"] == 4


def _ddp_rank(rank: int, out: str, port: int, argv: list[str]) -> None:
    """One rank of a 2-process gloo DDP run: trains, then writes where it stopped and its weights."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    models, results = [], []

    class Recorded(DiffusionTransformer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            models.append(self)

    original = train_cli.train_loop
    loop.DiffusionTransformer = Recorded
    train_cli.train_loop = lambda *a, **k: results.append(original(*a, **k)) or results[-1]
    assert train_cli.main(argv) == 0
    r = results[0]
    save_file({n: p.detach().contiguous() for n, p in models[0].named_parameters()}, f"{out}/rank{rank}.safetensors")
    Path(out, f"rank{rank}.json").write_text(
        json.dumps({"step": r.step, "stopped_by": r.stopped_by, "max_steps": r.max_steps}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_ranks_agree_on_the_schedule_and_the_time_budget(prepared, tmp_path):
    """Two gloo ranks plan --train-seconds from their own step times and start their clocks apart; rank 0's
    plan and a common budget stop must keep them in lockstep (else: different weights, or a hang)."""
    out = fresh(prepared, tmp_path, "ddp")
    argv = ["--out", str(out), "--train-seconds", "600", "--time-budget", "9", "--budget-margin", "1",
            "--eval-every", "0", "--log-every", "5", *TRAIN, "--eval-rows", "8", "--infill-rows", "0"]
    ctx = torch.multiprocessing.start_processes(_ddp_rank, args=(str(out), _free_port(), argv), nprocs=2, join=False,
                                                start_method="spawn")
    deadline = time.time() + 120
    while not ctx.join(timeout=1):
        if time.time() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("a rank did not finish: the ranks left the loop at different steps")
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1 and r0["stopped_by"] == "time_budget" and r0["step"] > 20  # past the planning steps
    assert r0["max_steps"] > r0["step"]  # planned from the measured speed, not reached
    w0, w1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    assert json.loads((out / "ckpt" / "state.json").read_text())["step"] == r0["step"]


def test_equal_time_study_variants_are_valid_train_flags():
    """benchmarks/equal_time.py passes these flags to `diffucode train`: they must parse, the objective's
    mixtures must sum to one, and the sizes must be valid shapes."""
    import argparse

    from benchmarks.equal_time import STUDIES
    from diffucode.training.masking import MaskingConfig

    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    for flags in STUDIES["objective"].values():
        args = parser.parse_args(["--out", "x", *flags])
        mix = MaskingConfig(p_uniform=args.p_uniform, p_infill=args.p_infill, p_body=args.p_body)
        assert abs(mix.kind_probs().sum() - 1) < 1e-9
    for flags in STUDIES["size"].values():
        args = parser.parse_args(["--out", "x", *flags])
        shape = preset(args.preset, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads)
        assert shape.d_model % shape.n_heads == 0 and shape.d_model // shape.n_heads == 64
    parts = {name: parser.parse_args(["--out", "x", *flags]) for name, flags in STUDIES["parts"].items()}
    shares = {}  # a flag not given keeps the run's value: the campaign's are the defaults
    for name, a in parts.items():
        given = {k: getattr(a, k) for k in ("p_uniform", "p_infill", "p_body") if getattr(a, k) is not None}
        shares[name] = MaskingConfig(**given).kind_probs()
    for name, left_out in (("no uniform", 0), ("no infill", 1), ("no function bodies", 2)):
        kept = [k for k in range(3) if k != left_out]
        assert shares[name][left_out] == 0  # the others keep the defaults' ratio
        assert shares[name][kept[0]] / shares[name][kept[1]] == pytest.approx(
            shares["all (defaults)"][kept[0]] / shares["all (defaults)"][kept[1]])
    assert parts["line spans only"].p_syntax_span == 0 and parts["all (defaults)"].p_syntax_span is None


def test_a_study_branch_continues_a_run_and_counts_from_the_branch_point(prepared, tmp_path):
    from benchmarks.equal_time import branch, command, loss_curve

    run = fresh(prepared, tmp_path, "run")
    common = ["--eval-every", "0", "--log-every", "1", *TRAIN, "--eval-rows", "0"]
    assert train_cli.main(["--out", str(run), "--max-steps", "4", *common]) == 0
    with (run / "metrics.jsonl").open("a") as f:  # a stopped call logged past its last checkpoint
        f.write(json.dumps({"kind": "train", "step": 5, "tokens": 1, "loss": 9.0}) + "\n")
        f.write('{"kind": "tra')  # a line being written
    leg = tmp_path / "parts" / "no-uniform"
    branch(leg, run)
    assert (leg / "data").resolve() == (run / "data").resolve() and (leg / "data").is_symlink()
    assert json.loads((leg / "branch.json").read_text())["step"] == 4
    assert max(r["step"] for r in records(leg, "train")) == 4  # nothing past the checkpoint is copied
    assert train_cli.main(["--out", str(leg), "--max-steps", "6", "--p-uniform", "0", *common]) == 0
    assert json.loads((leg / "ckpt" / "state.json").read_text())["step"] == 6
    assert json.loads((run / "ckpt" / "state.json").read_text())["step"] == 4  # the run itself is untouched
    tokens = {r["step"]: r["tokens"] for r in records(leg, "train")}
    assert [n for n, _ in loss_curve(leg)] == [tokens[5] - tokens[4], tokens[6] - tokens[4]]
    args = argparse.Namespace(from_run=str(run), seconds=60, parallel=True, overhead=0)
    cmd = command(leg, ["--p-uniform", "0"], args, [])
    assert cmd[cmd.index("--schedule") + 1] == "wsd" and cmd[cmd.index("--time-budget") + 1] == "60"
    assert cmd[cmd.index("--threads") + 1] == "1" and cmd[-2:] == ["--p-uniform", "0"]


def test_bad_destinations_and_numbers_are_refused_before_any_work(tmp_path, tiny_model_dir, capsys):
    from diffucode import cli
    from diffucode.errors import CheckpointError, ConfigError
    from diffucode.training.config import TrainConfig
    from diffucode.training.export import check_export_dest

    check_export_dest(tmp_path / "new")  # a new folder, an empty one, or a diffucode model folder: fine
    check_export_dest(tiny_model_dir)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "model-best.safetensors").write_bytes(b"the user's")
    with pytest.raises(CheckpointError, match="not a diffucode model folder"):
        check_export_dest(user)
    (user / "config.json").write_text('{"model_type": "qwen2"}')
    with pytest.raises(CheckpointError, match="not a diffucode model folder"):
        check_export_dest(user)
    with pytest.raises(CheckpointError, match="is a file"):
        check_export_dest(user / "config.json")
    for bad in ({"batch_size": 0}, {"lr": -1.0}, {"max_steps": -3}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)
    out = tmp_path / "run"
    for argv, message in ((["--device", "bogus"], "unknown device"),
                          (["--export", str(user)], "not a diffucode model"),
                          (["--time-budget", "-5"], "--time-budget"),
                          (["--init-from", str(user)], "not a diffucode model"),
                          (["--batch-size", "0"], "--batch-size")):
        assert cli.main(["train", "--out", str(out), "--smoke", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert (user / "model-best.safetensors").read_bytes() == b"the user's"


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_first_call_leaves_no_run_and_a_retry_starts_afresh(prepared, tmp_path, existing, capsys):
    # A first call that stops with a one-line error (sources not there, a folder with no usable files,
    # no benchmark data) writes no run.json, or removes it and what else it wrote, and a folder it made:
    # the corrected retry into the same --out is a new run with its own data settings.
    out = tmp_path / "run"
    if existing:
        out.mkdir()  # an empty folder the user made: kept, and left empty
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no Python here\n")
    base = ["--out", str(out), "--prepare-only", "--vocab-size", "512", "--tokenizer-sample-mb", "1",
            "--data-workers", "1", "--quiet"]
    for flags, message in ((["--sources", str(tmp_path / "nope"), "--no-decontaminate"], "source folder not found"),
                           (["--sources", str(empty), "--bench-data", str(tmp_path / "nope")],
                            "benchmark data folder not found"),
                           (["--sources", str(empty), "--no-decontaminate"], "no training documents")):
        assert train_cli.main(base + flags) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert out.is_dir() == existing and (not existing or not any(out.iterdir()))
    src = prepared.parent / "src"
    assert train_cli.main(base + ["--sources", str(src), "--no-decontaminate", "--heldout-permille", "250"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["sources"] == [str(src)] and (out / "tokenizer.json").is_file()
    # The run exists now: resuming it keeps working, and its data settings stay fixed.
    assert train_cli.main(["--out", str(out), "--prepare-only", "--quiet"]) == 0
    assert train_cli.main(["--out", str(out), "--prepare-only", "--sources", str(empty)]) == 2
    assert "cannot change" in capsys.readouterr().err


def test_out_must_be_a_run_a_new_or_an_empty_folder(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    for out, message in ((mine, "not a diffucode run folder"), (mine / "notes.txt", "is a file")):
        assert train_cli.main(["--out", str(out), "--smoke", "--prepare-only"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and (mine / "notes.txt").read_text() == "the user's"
    (tmp_path / "empty").mkdir()
    for fine in (tmp_path / "new", tmp_path / "empty"):  # a new path, an empty folder, a run folder
        train_cli.check_run_folder(fine)
    (mine / "run.json").write_text('{"data": {}, "train": {}, "command": []}')
    train_cli.check_run_folder(mine)
    # What an "empty" folder may already hold: a .gitkeep, and the log a shell redirect
    # (`diffucode train --out runs/x > runs/x/train.log`) creates before the command starts.
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / ".gitkeep").write_text("")
    (kept / "train.log").write_text("")
    train_cli.check_run_folder(kept)
    (kept / "train.log").write_text("an earlier run's log\n")
    with pytest.raises(ConfigError, match="not a diffucode run folder"):
        train_cli.check_run_folder(kept)
    for other in (".git", "tokenizer.json"):  # a hidden folder, an empty file named like one the run writes
        odd = tmp_path / f"odd{other}"
        odd.mkdir()
        (odd / other).mkdir() if other == ".git" else (odd / other).write_text("")
        with pytest.raises(ConfigError, match="not a diffucode run folder"):
            train_cli.check_run_folder(odd)


def test_a_first_call_that_fails_in_any_way_removes_what_it_wrote_and_the_folders_it_made(tmp_path, monkeypatch):
    # Not only one-line errors: an unexpected failure while the data is built (a disk error, a
    # tokenizer error) also leaves no half-made run, and no empty parent folders, behind.
    out = tmp_path / "runs" / "nested" / "run"

    def failing_prepare(folder, *args, **kwargs):
        (folder).mkdir(parents=True)
        (folder / "shard-0.bin").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_cli, "prepare", failing_prepare)
    with pytest.raises(OSError, match="No space left"):
        train_cli.main(["--out", str(out), "--smoke", "--prepare-only", "--quiet", "--no-decontaminate"])
    assert not (tmp_path / "runs").exists()
    # A parent that holds something else stays, and so does what it holds.
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "other.txt").write_text("keep")
    with pytest.raises(OSError):
        train_cli.main(["--out", str(out), "--smoke", "--prepare-only", "--quiet", "--no-decontaminate"])
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["other.txt"]
    # Ctrl-C keeps the run, so that rerunning resumes.
    def interrupted_prepare(folder, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_cli, "prepare", interrupted_prepare)
    with pytest.raises(KeyboardInterrupt):
        train_cli.main(["--out", str(out), "--smoke", "--prepare-only", "--quiet", "--no-decontaminate"])
    assert (out / "run.json").is_file()


def test_a_run_can_train_on_another_runs_data(prepared, tmp_path, monkeypatch, capsys):
    # --data-from: a new run of another shape trains on the same tokens (the data linked, the tokenizer
    # copied, the data settings taken over), without rebuilding anything; the source run is untouched.
    before = sorted(p.name for p in (prepared / "data").iterdir())
    out = tmp_path / "other-shape"
    flags = ["--data-from", str(prepared), "--max-steps", "2", "--eval-every", "0", *TRAIN, "--eval-rows", "0"]
    assert train_cli.main(["--out", str(out), *flags, "--d-model", "48"]) == 0
    run, src = json.loads((out / "run.json").read_text()), json.loads((prepared / "run.json").read_text())
    assert run["data"] == src["data"] and run["data_from"] == str(prepared.resolve())
    assert run["train"]["d_model"] == 48 != src["train"]["d_model"]
    assert (out / "data").is_symlink() and (out / "data").resolve() == (prepared / "data").resolve()
    assert (out / "tokenizer.json").read_bytes() == (prepared / "tokenizer.json").read_bytes()
    assert json.loads((out / "ckpt" / "state.json").read_text())["step"] == 2
    # A later call resumes on the same data, with or without the flag; another source is refused.
    assert train_cli.main(["--out", str(out), *flags, "--max-steps", "3"]) == 0
    assert train_cli.main(["--out", str(out), "--data-from", str(tmp_path), "--prepare-only"]) == 2
    assert "already has its data" in capsys.readouterr().err
    # Refused in one line, leaving nothing: a data flag that contradicts the source, a folder with no data.
    for bad, message in ((["--data-from", str(prepared), "--vocab-size", "1024"], "differs from the data of"),
                         (["--data-from", str(tmp_path / "nope")], "not a diffucode run folder")):
        assert train_cli.main(["--out", str(tmp_path / "refused"), "--prepare-only", *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "refused").exists()
    assert train_cli.main(["--out", str(tmp_path / "refused"), "--prepare-only", "--smoke",
                           "--data-from", str(prepared)]) == 2
    assert "leave out --smoke" in capsys.readouterr().err
    # A linked run never builds data in the other run's folder: incomplete data there is refused.
    half = tmp_path / "half"
    shutil.copytree(prepared, half)
    shard = next((half / "data").glob("train-*.json"))
    shard.unlink()
    assert train_cli.main(["--out", str(tmp_path / "refused"), "--prepare-only", "--data-from", str(half)]) == 2
    assert "not complete" in capsys.readouterr().err and not shard.exists()
    # A first call that fails once linked removes the link, never the source's data.
    real_link = Path.symlink_to

    def failing_link(self, target, *args, **kwargs):
        real_link(self, target, *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "symlink_to", failing_link)
    with pytest.raises(OSError):
        train_cli.main(["--out", str(tmp_path / "failed"), "--data-from", str(prepared), "--prepare-only", "--quiet"])
    monkeypatch.undo()
    assert not (tmp_path / "failed").exists()
    assert sorted(p.name for p in (prepared / "data").iterdir()) == before
    # A run whose linked data is gone says so in one line.
    moved = tmp_path / "moved"
    shutil.copytree(prepared, moved)
    linked = tmp_path / "linked"
    assert train_cli.main(["--out", str(linked), "--data-from", str(moved), "--prepare-only", "--quiet"]) == 0
    shutil.rmtree(moved)
    assert train_cli.main(["--out", str(linked), "--prepare-only", "--quiet"]) == 2
    assert "is gone" in capsys.readouterr().err

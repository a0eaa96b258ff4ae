"""The training loop on CPU (diffucode/train.py): loss falls, resume is exact, the time budget is kept,
export writes a loadable model folder. Everything runs the `tiny` preset on a few stdlib modules."""

import argparse
import json
import shutil
import sysconfig
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffucode import checkpoint, train
from diffucode.model import DiffusionTransformer, preset

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ["textwrap.py", "string.py", "bisect.py", "heapq.py", "fnmatch.py", "shlex.py", "colorsys.py", "glob.py",
           "json/decoder.py", "json/encoder.py", "json/scanner.py", "json/__init__.py", "abc.py", "numbers.py",
           "pprint.py", "queue.py", "sched.py", "stat.py", "tabnanny.py", "token.py", "calendar.py", "base64.py",
           "csv.py", "difflib.py", "dataclasses.py", "enum.py", "functools.py", "gettext.py", "locale.py", "operator.py"]
TRAIN = ["--preset", "tiny", "--seq-len", "64", "--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "5",
         "--eval-rows", "16", "--infill-rows", "4", "--save-every", "0", "--num-workers", "0", "--no-compile",
         "--quiet", "--device", "cpu", "--hole-menu", "8", "16", "24", "--max-body-tokens", "24", "--max-span-tokens", "24"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A run folder with data and tokenizer only (made through the CLI with --prepare-only)."""
    root = tmp_path_factory.mktemp("train")
    src = root / "src"
    for m in MODULES:
        if (STDLIB / m).is_file():
            (src / m).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(STDLIB / m, src / m)
    out = root / "base"
    rc = train.main(["--out", str(out), "--prepare-only", "--sources", str(src), "--vocab-size", "512",
                     "--heldout-permille", "250", "--no-decontaminate", "--tokenizer-sample-mb", "1", "--data-workers", "1", *TRAIN])
    assert rc == 0
    return out


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
    torch.testing.assert_close(m.lm_head(train.hidden_states(m, ids)), m(ids))
    sel = torch.tensor([0, 5, 17, 31])
    tg = torch.randint(0, 97, (4,))
    total, ce = train.head_loss(m.lm_head.weight, train.hidden_states(m, ids), sel, tg, torch.ones(4))
    ref = torch.nn.functional.cross_entropy(m(ids).flatten(0, 1)[sel], tg, reduction="none")
    torch.testing.assert_close(ce, ref)
    torch.testing.assert_close(total, ref.sum())


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = train.TrainConfig(lr=1e-3, warmup_steps=10, min_lr_frac=0.1)
    lrs = [train.lr_at(s, cfg, 100) for s in range(120)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[100] == pytest.approx(1e-4) and lrs[119] == pytest.approx(1e-4)


def test_cli_has_help_for_every_flag():
    parser = argparse.ArgumentParser(prog="diffucode")
    sub = parser.add_subparsers()
    train.register(sub)
    p = sub.choices["train"]
    for action in p._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, action.option_strings
    args = parser.parse_args(["train", "--out", "x", "--preset", "tiny", "--time-budget", "540", "--hole-menu", "8", "16"])
    assert args.func is train.run and args.hole_menu == [8, 16] and args.time_budget == 540
    assert "--time-budget" in p.format_help()


def test_smoke_run_loss_falls(prepared, tmp_path):
    out = fresh(prepared, tmp_path, "smoke")
    assert train.main(["--out", str(out), "--max-steps", "30", "--eval-every", "30", "--log-every", "10", *TRAIN]) == 0
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
    assert train.main(["--out", str(a), *common]) == 0
    assert train.main(["--out", str(b), "--steps", "3", *common]) == 0
    assert json.loads((b / "ckpt" / "state.json").read_text())["step"] == 3
    assert train.main(["--out", str(b), *common]) == 0
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
    assert train.main(["--out", str(out), "--max-steps", "100000", "--time-budget", "4", "--budget-margin", "0.5",
                       "--eval-every", "0", "--log-every", "10", *TRAIN, "--eval-rows", "0"]) == 0
    assert time.time() - t0 < 4.5
    state = json.loads((out / "ckpt" / "state.json").read_text())
    assert state["step"] > 0 and state["max_steps"] == 100000
    assert "time_budget" in json.dumps(state) or state["step"] < 100000
    checkpoint.load(out / "ckpt")  # a complete model folder


def test_changing_a_fixed_setting_is_refused(prepared, tmp_path, capsys):
    out = fresh(prepared, tmp_path, "fixed")
    assert train.main(["--out", str(out), "--preset", "mini", "--prepare-only"]) == 2
    assert "cannot change" in capsys.readouterr().err


def test_export_writes_a_loadable_small_model(prepared, tmp_path):
    out = fresh(prepared, tmp_path, "exp")
    dest = tmp_path / "weights" / "default"
    assert train.main(["--out", str(out), "--max-steps", "4", "--eval-every", "0", "--log-every", "2",
                       "--export", str(dest), *TRAIN]) == 0
    ck = checkpoint.load(dest)
    assert ck.model.cfg.d_model == 64
    cfg = json.loads((dest / "config.json").read_text())
    assert cfg["torch_dtype"] == "float16" and cfg["infill"]["pad_tail"] is True
    assert cfg["training"]["steps"] == 4
    assert all(p.stat().st_size < 15 * 10**6 for p in dest.iterdir())
    card = (dest / "README.md").read_text()
    assert "elbo_bpt" in card and "diffucode train" in card
    from diffucode.models import load_engine

    assert load_engine(dest).pad_tail


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_compiled_bf16_run_and_resume(prepared, tmp_path):
    """On a GPU machine: `pytest -m gpu tests/test_training.py` (compile, bf16 autocast, fused AdamW, workers)."""
    out = fresh(prepared, tmp_path, "gpu")
    gpu = [a for a in TRAIN if a not in ("--no-compile", "cpu", "--device")] + ["--device", "cuda", "--compile", "--num-workers", "2"]
    assert train.main(["--out", str(out), "--max-steps", "8", "--steps", "4", "--eval-every", "4", "--log-every", "1", *gpu]) == 0
    assert train.main(["--out", str(out), "--max-steps", "8", "--eval-every", "4", "--log-every", "1", *gpu]) == 0
    steps = records(out, "train")
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert all(r["loss"] == r["loss"] and r["loss"] < 20 for r in steps)  # finite
    assert records(out, "eval")[-1]["step"] == 8
    state = load_file(str(out / "ckpt" / "state.safetensors"))
    assert any(k.endswith(".exp_avg") for k in state)

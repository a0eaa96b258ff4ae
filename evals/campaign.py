"""`diffucode campaign`: continue training the embedded model, measure it, and ship it only if it is better.

One command per training run of a few hours (docs/training.md, "The CPU campaign"):

    nice -n 19 diffucode campaign --hours 3

Phases:
1. train: `diffucode train` in the campaign's run folder with the warmup-stable-decay schedule and a time
   budget, so the run ends with a decayed model however long it was. A run folder that is still there is
   resumed; otherwise a new run starts from the shipped weights (`--init-from`), or, with train flags after
   `--`, a new model of that shape.
2. export the latest checkpoint (float16) into RUN/export.
3. measure the new model and the shipped one the same way: held-out bits per byte on the same text
   (heldout.py) and `diffucode eval single-line` (HumanEval-SingleLineInfilling, all 1,033 tasks), and
   reported beside them, the bits per byte of the tasks' right lines in place (infill_bpb.py: a measure of
   the same job that moves in small steps, where pass@1 moves by whole tasks).
4. promote: the new model replaces the shipped weights only when it is better on both, and its card and
   config.json record the numbers of both (the export keeps them either way).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from diffucode.errors import ConfigError, DiffucodeError
from diffucode.settings import InfillSettings

TASKSET = "single-line"
EVAL_SECTION = "## Evaluation"


def default_run() -> Path:
    """Outside any checkout, so that the run outlives a fresh clone: $DIFFUCODE_CAMPAIGN or ~/.cache."""
    return Path(os.environ.get("DIFFUCODE_CAMPAIGN") or Path.home() / ".cache" / "diffucode" / "campaign")


@dataclass
class Measured:
    heldout_bpb: float
    pass_at_1: float
    nonempty: float
    tasks: int
    eval_dir: str
    fill_bpb: float  # the single-line tasks' right lines in place (infill_bpb.py); reported, not a criterion

    def as_dict(self) -> dict:
        return {"heldout_bpb": round(self.heldout_bpb, 4), "single_line_pass@1": round(self.pass_at_1, 4),
                "single_line_nonempty": round(self.nonempty, 4), "single_line_tasks": self.tasks,
                "single_line_fill_bpb": round(self.fill_bpb, 4)}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "campaign", help="continue training the embedded model, measure it, ship it only if it is better",
        description="Train the campaign's run for --hours (warmup-stable-decay, resumable), export it, measure it "
                    "beside the shipped model (held-out bits/byte on the same text, diffucode eval single-line) and "
                    "replace the shipped weights only when both numbers improve. Run it under nice: "
                    "nice -n 19 diffucode campaign --hours 3",
    )
    p.add_argument("--run", type=Path, default=None, help="the campaign's run folder (default: $DIFFUCODE_CAMPAIGN or "
                                                          "~/.cache/diffucode/campaign)")
    p.add_argument("--hours", type=float, default=3.0, help="training time of this run (0: only export, measure and "
                                                            "promote the run's latest checkpoint; default: 3)")
    p.add_argument("--shipped", type=Path, default=None,
                   help="the model to beat and replace (default: the embedded model)")
    p.add_argument("--data-dir", default=None,
                   help="benchmark data laid out like shared/data (default: $DIFFUCODE_EVAL_DATA "
                        "or a shared/data beside the checkout)")
    p.add_argument("--limit", type=int, default=0,
                   help="only the first N single-line tasks (0: all; a partial run never promotes)")
    p.add_argument("--heldout-chunks", type=int, default=512,
                   help="held-out text chunks both models are measured on (default: 512)")
    p.add_argument("--no-promote", action="store_true", help="measure and report, but leave the shipped model as it is")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="after --: flags for a new run's `diffucode train` "
                        "(e.g. -- --preset mini --d-model 256 --vocab-size 4096)")
    p.set_defaults(func=run, on_interrupt="the run folder keeps its last checkpoint: rerun to resume")


def run(args: argparse.Namespace) -> int:
    # torch and the training code load here, once the command runs: `diffucode campaign --help` stays quick
    from diffucode import checkpoint
    from diffucode.training.decontamination import find_bench_data
    from diffucode.loading import EMBEDDED
    from diffucode.training.export import check_export_dest, export

    args.shipped = args.shipped or EMBEDDED
    run_dir = (args.run or default_run()).expanduser()
    extra = [a for a in args.train_args if a != "--"]
    data_dir = find_bench_data(args.data_dir or "")
    if data_dir is None:
        raise ConfigError("the benchmark data was not found: pass --data-dir or set DIFFUCODE_EVAL_DATA")
    if args.hours < 0 or args.limit < 0 or args.heldout_chunks < 1:
        raise ConfigError("--hours and --limit must be >= 0, --heldout-chunks >= 1")
    checkpoint.check(args.shipped)
    export_dir = run_dir / "export"
    if args.hours > 0:
        train(run_dir, args.hours, args.shipped, data_dir, extra, export_dir)
    else:
        check_export_dest(export_dir)
        export(run_dir, export_dir, log=print)
    new, old = measure_both(export_dir, args.shipped, run_dir, data_dir, limit=args.limit, n_chunks=args.heldout_chunks)
    verdict = decide(new, old, partial=bool(args.limit))
    record(export_dir, new, old, verdict)
    print(table(new, old))
    if verdict is None and not args.no_promote:
        promote(export_dir, args.shipped)
        print(f"promoted: {export_dir} replaces {args.shipped}")
    else:
        print(f"kept {args.shipped}: {verdict or '--no-promote'}")
    return 0


# -- 1. train -----------------------------------------------------------------------------------------------
def train_argv(run_dir: Path, hours: float, shipped: Path, data_dir: Path, extra: list[str],
               export_dir: Path) -> list[str]:
    """The `diffucode train` flags of this run: resume the run folder, else start from the shipped weights
    (or from scratch with the shape given in `extra`)."""
    import torch

    argv = ["--out", str(run_dir), "--schedule", "wsd", "--time-budget", str(round(hours * 3600)),
            "--export", str(export_dir)]
    if not torch.cuda.is_available():
        argv += ["--num-workers", "0"]  # a batch costs ~3 ms; a worker process would take a core from the step
    if not (run_dir / "run.json").is_file():
        argv += ["--bench-data", str(data_dir)] + ([] if extra else ["--init-from", str(shipped)])
    return argv + extra


def train(run_dir: Path, hours: float, shipped: Path, data_dir: Path, extra: list[str], export_dir: Path) -> None:
    argv = train_argv(run_dir, hours, shipped, data_dir, extra, export_dir)
    print("diffucode train " + " ".join(argv), flush=True)
    done = subprocess.run([sys.executable, "-m", "diffucode.training", *argv])
    if done.returncode != 0:
        raise DiffucodeError(f"diffucode train exited with {done.returncode}; "
                             f"the run folder {run_dir} keeps its last checkpoint")


# -- 3. measure ---------------------------------------------------------------------------------------------
def measure_both(new_dir: Path, old_dir: Path, run_dir: Path, data_dir: Path, *, limit: int, n_chunks: int):
    from diffucode import checkpoint
    from diffucode.loading import load_engine
    from diffucode_evals.data import load_taskset
    from diffucode_evals.heldout import bits_per_byte, common_chunks, heldout_texts
    from diffucode_evals.infill_bpb import infill_bits_per_byte

    new, old = checkpoint.load(new_dir), checkpoint.load(old_dir)
    tasks = load_taskset(TASKSET, data_dir=data_dir).select(limit=limit or None).tasks
    texts = common_chunks(heldout_texts(run_dir), [new, old], n=n_chunks)
    if not texts:
        raise ConfigError(f"{run_dir} has no held-out text that both models can read")
    print(f"held-out: {len(texts)} chunks of {run_dir}'s held-out files", flush=True)
    out = []
    for label, folder, ck in (("new", new_dir, new), ("shipped", old_dir, old)):
        bpb = bits_per_byte(ck, texts)
        ev = single_line(folder, run_dir / "evals" / f"{label}", data_dir, limit=limit)
        out.append(Measured(bpb, *ev, fill_bpb=infill_bits_per_byte(load_engine(folder), tasks)))
    return out[0], out[1]


def weights_digest(model: Path) -> str:
    """sha256 over a model folder's config.json and weight files: what an earlier measurement was of."""
    h = hashlib.sha256()
    for f in sorted(model.glob("*.safetensors")) + [model / "config.json"]:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def single_line(model: Path, out: Path, data_dir: Path, *, limit: int) -> tuple[float, float, int, str]:
    """pass@1, share of non-empty completions, tasks and the run folder of `diffucode eval single-line`;
    an earlier measurement of the same weights with the same limit in `out` is read, not repeated."""
    cmd = [sys.executable, "-m", "diffucode", "eval", TASKSET, "--model", str(model), "--data-dir", str(data_dir),
           "--out", str(out), "--overwrite", "--quiet"] + (["--limit", str(limit)] if limit else [])
    stamp = {"weights": weights_digest(model), "limit": limit, "argv": cmd[3:],
             "defaults": repr(InfillSettings())}  # a measurement under other default settings is not reused
    done_before = out / "campaign.json"
    if not (done_before.is_file() and json.loads(done_before.read_text()) == stamp
            and (out / "summary.json").is_file()):
        print(" ".join(["diffucode", *cmd[3:]]), flush=True)
        done = subprocess.run(cmd)
        if done.returncode != 0:
            raise DiffucodeError(f"diffucode eval {TASKSET} exited with {done.returncode} for {model}")
        done_before.write_text(json.dumps(stamp) + "\n")
    else:
        print(f"{out}: measured before (same weights, same tasks)", flush=True)
    summary = json.loads((out / "summary.json").read_text())
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line.strip()]
    nonempty = sum(bool(s.get("completion", "").strip()) for s in samples) / max(len(samples), 1)
    return float(summary["pass@1"] or 0.0), nonempty, int(summary["n_tasks"]), str(out)


# -- 4. decide, record, promote -----------------------------------------------------------------------------
def decide(new: Measured, old: Measured, *, partial: bool) -> str | None:
    """None when the new model should replace the shipped one, else why not."""
    if partial:
        return "--limit measured only part of the tasks"
    if not new.heldout_bpb < old.heldout_bpb:
        return f"held-out bits/byte {new.heldout_bpb:.4f} is not below {old.heldout_bpb:.4f}"
    if not new.pass_at_1 > old.pass_at_1:
        return f"single-line pass@1 {100 * new.pass_at_1:.2f}% is not above {100 * old.pass_at_1:.2f}%"
    return None


def table(new: Measured, old: Measured) -> str:
    rows = [("held-out bits/byte", f"{new.heldout_bpb:.4f}", f"{old.heldout_bpb:.4f}"),
            (f"single-line pass@1 ({new.tasks} tasks)", f"{100 * new.pass_at_1:.2f}%", f"{100 * old.pass_at_1:.2f}%"),
            ("non-empty completions", f"{100 * new.nonempty:.1f}%", f"{100 * old.nonempty:.1f}%"),
            ("single-line right lines in place, bits/byte", f"{new.fill_bpb:.4f}", f"{old.fill_bpb:.4f}")]
    lines = ["| | new model | shipped model |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def record(export_dir: Path, new: Measured, old: Measured, verdict: str | None) -> None:
    """config.json `evaluation` and an Evaluation section in the card of the exported model."""
    config_path = export_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["evaluation"] = {**new.as_dict(), "compared_with": old.as_dict(), "promoted": verdict is None,
                            "verdict": verdict or "better on both", "date": time.strftime("%Y-%m-%d")}
    tmp = config_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.replace(config_path)
    card_path = export_dir / "README.md"
    card = card_path.read_text(encoding="utf-8").split(EVAL_SECTION)[0].rstrip() + "\n\n"
    card += (f"{EVAL_SECTION} ({time.strftime('%Y-%m-%d')}, `diffucode campaign`)\n"
             f"Measured beside the model it was compared with (held-out: chunks of the run's held-out files that both\n"
             f"models read whole; single-line: `diffucode eval single-line`, HumanEval-SingleLineInfilling, greedy,\n"
             f"no oracle length).\n\n{table(new, old)}\n\n{history(config)}\n")
    card_path.write_text(card, encoding="utf-8")


def history(config: dict) -> str:
    """The whole training history in one line: calls, tokens and device-hours over every generation."""
    calls = tokens = seconds = 0.0
    gen = config.get("training") or {}
    while gen:
        calls += len(gen.get("commands") or [])
        tokens += gen.get("tokens_seen") or 0
        seconds += gen.get("train_seconds") or 0
        gen = gen.get("init_from") or {}
    return (f"Training so far: {int(calls)} call(s) of `diffucode train`, {tokens / 1e6:.1f} M tokens, "
            f"{seconds / 3600:.2f} hours of training (all generations; the calls are listed under Reproduce).")


def promote(export_dir: Path, shipped: Path) -> None:
    """Replace the shipped folder by a copy of the export: copied beside it, then swapped by renames."""
    tmp, old = shipped.with_name(shipped.name + ".new"), shipped.with_name(shipped.name + ".old")
    for p in (tmp, old):
        shutil.rmtree(p, ignore_errors=True)
    shutil.copytree(export_dir, tmp)
    shipped.rename(old)
    tmp.rename(shipped)
    shutil.rmtree(old)

"""Studies at equal wall time: train one model per variant for the same training seconds, on the same
data, then measure every export the same way.

    # what each part of the objective buys (from scratch, the campaign's shape and data)
    python benchmarks/equal_time.py --study objective --out runs/ablate --seconds 900 \
        --data-dir ../shared/data -- --data-from ~/.cache/diffucode/campaign --batch-size 64 --seq-len 256
    # which model size (three shapes, the same data and batch)
    python benchmarks/equal_time.py --study size --out runs/sizes --seconds 900 \
        --data-dir ../shared/data -- --data-from ~/.cache/diffucode/campaign --batch-size 64 --seq-len 256
    # what each part buys a model that is already trained: every variant continues a run's checkpoint
    # (optimizer included) for the same wall time, all at once with one thread each
    python benchmarks/equal_time.py --study parts --from-run ~/.cache/diffucode/campaign --parallel \
        --out runs/parts --seconds 4500 --data-dir ../shared/data
    python benchmarks/equal_time.py --out /tmp/ablate --seconds 40 -- --smoke --device cpu   # a CPU check

Studies (each variant's flags go to `diffucode train` after the common flags given after --):
  objective   uniform only (MDLM/LLaDA, 1/t weights); + infill over random whole lines (60/40);
              + infill over syntax spans (the same with 60 % of the spans from syntax nodes);
              all (the defaults: 50 % uniform, 35 % infill, 15 % function body after signature + docstring)
  parts       leave one part out of the mixture: all (the run's own settings: for the campaign, the defaults);
              no uniform rows; no infill rows; no function-body rows (the others keep their ratio); line
              spans only (no syntax spans)
  size        192 x 4, 256 x 6 (the campaign's shape), 384 x 6; heads of 64 dimensions

With --from-run RUN, each variant's folder starts as a branch of RUN: its checkpoint (optimizer moments and
step included), run.json and tokenizer are copied, its data linked, and the variant resumes it with the
campaign's schedule (`--schedule wsd --time-budget SECONDS`: warm up again, hold, decay over the last 20 %).
Its loss curve and tokens count from the branch point (OUT/VARIANT/branch.json). With --parallel every
variant trains at the same time with one thread each (the same machine, the same noise for all of them).

Each variant is a `diffucode train` run folder under --out (a training budget of --seconds with the default
cosine schedule, so every run ends decayed; or the branch above; an export). Rerunning with the same --out
would resume those folders: give a new --out (or delete it) for a new study, or --measure-only to measure
them again. With `--data-from RUN` among the common flags every variant trains on that run's prepared
tokens and nothing is rebuilt. Printed per variant: parameters, tokens seen, the training loss at
25/50/75/100 % of the run, held-out bits per byte (evals/heldout.py: the same chunks for every variant), exact
single-line infill with the oracle and the automatic length (the run's own evaluation), and with --data-dir
the single-line fills' bits per byte in place (evals/infill_bpb.py: all 1,033 tasks, the same masks for
every variant), pass@1 and the non-empty share of `diffucode eval single-line` (--eval-limit tasks). A
JSON file with the same rows and each run's training-loss curve is written to OUT/study.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

STUDIES = {
    "objective": {
        "uniform only": ["--p-uniform", "1", "--p-infill", "0", "--p-body", "0"],
        "+ infill, line spans": ["--p-uniform", "0.6", "--p-infill", "0.4", "--p-body", "0", "--p-syntax-span", "0"],
        "+ infill, syntax spans": ["--p-uniform", "0.6", "--p-infill", "0.4", "--p-body", "0",
                                   "--p-syntax-span", "0.6"],
        "all (defaults)": ["--p-uniform", "0.5", "--p-infill", "0.35", "--p-body", "0.15", "--p-syntax-span", "0.6"],
    },
    "parts": {
        "all (defaults)": [],
        "no uniform": ["--p-uniform", "0"],
        "no infill": ["--p-infill", "0"],
        "no function bodies": ["--p-body", "0"],
        "line spans only": ["--p-syntax-span", "0"],
    },
    "size": {
        "192 x 4": ["--preset", "mini", "--d-model", "192", "--n-layers", "4", "--n-heads", "3"],
        "256 x 6": ["--preset", "mini", "--d-model", "256", "--n-layers", "6", "--n-heads", "4"],
        "384 x 6": ["--preset", "mini", "--d-model", "384", "--n-layers", "6", "--n-heads", "6"],
    },
}


def slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name).split())


def branch(folder: Path, run: Path) -> None:
    """Start `folder` as a branch of the run folder `run`: its checkpoint, run.json, tokenizer and the metrics up
    to the checkpoint copied, its data linked; branch.json says where it starts."""
    from diffucode.training.state import ckpt_dir

    saved = ckpt_dir(run)  # the checkpoint a resume would read (a save cut off mid-swap leaves ckpt.old)
    if saved is None:
        raise SystemExit(f"{run} has no checkpoint to branch from")
    folder.mkdir(parents=True)
    shutil.copytree(saved, folder / "ckpt")  # first: a run still training may save again meanwhile
    state = json.loads((folder / "ckpt" / "state.json").read_text())
    for name in ("run.json", "tokenizer.json"):
        shutil.copy2(run / name, folder / name)
    rows = [r for r in map(_parsed, (run / "metrics.jsonl").read_text().splitlines())
            if r is not None and r.get("step", 0) <= state["step"]]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "data").symlink_to((run / "data").resolve(), target_is_directory=True)
    (folder / "branch.json").write_text(json.dumps({"from": str(run), "step": state["step"],
                                                    "tokens": state["tokens"]}) + "\n")


def _parsed(line: str) -> dict | None:
    """A metrics line, or None for a blank or cut-off one (a run still writing)."""
    try:
        return json.loads(line) if line.strip() else None
    except json.JSONDecodeError:
        return None


def command(folder: Path, flags: list[str], args, extra: list[str]) -> list[str]:
    """The `diffucode train` call of one variant: a new run with its own cosine schedule, or with --from-run a
    call of the campaign's schedule on the branch; --parallel gives each variant one thread."""
    budget = (["--schedule", "wsd", "--time-budget", str(args.seconds), "--num-workers", "0"] if args.from_run
              else ["--train-seconds", str(args.seconds), "--time-budget", str(args.seconds + args.overhead)])
    threads = ["--threads", "1"] if args.parallel else []
    return [sys.executable, "-m", "diffucode.training", "--out", str(folder), *budget, "--export",
            str(folder / "export"), *threads, *extra, *flags]


def train_all(folders: list[Path], flags: list[list[str]], args, extra: list[str]) -> None:
    """Train and export every variant, one after the other or (--parallel) all at once."""
    if args.from_run:
        for folder in folders:
            if not folder.exists():
                branch(folder, Path(args.from_run).expanduser())
    cmds = [command(folder, f, args, extra) for folder, f in zip(folders, flags)]
    for cmd in cmds:
        print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    if not args.parallel:
        for cmd in cmds:
            subprocess.run(cmd, check=True)
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        procs = []
        try:
            for folder, cmd in zip(folders, cmds):
                log = stack.enter_context(open(folder.with_suffix(".log"), "w"))
                procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        finally:  # a launch that failed: the runs already started are waited for, not left behind
            failed = [str(folder) for folder, proc in zip(folders, procs) if proc.wait() != 0]
    if failed:
        raise SystemExit(f"training failed in {', '.join(failed)} (see the .log beside each)")


def start_of(folder: Path) -> tuple[int, int]:
    """(step, tokens) where the variant's own training starts: its branch point, or 0 for a new run."""
    marker = folder / "branch.json"
    if not marker.is_file():
        return 0, 0
    b = json.loads(marker.read_text())
    return int(b["step"]), int(b["tokens"])


def loss_curve(folder: Path) -> list[tuple[int, float]]:
    """(tokens since the start, training loss) of every logged step of the variant's own training."""
    step0, tokens0 = start_of(folder)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["tokens"] - tokens0, r["loss"]) for r in rows
            if r.get("kind") == "train" and "loss" in r and r["step"] > step0]


def at_fractions(curve: list[tuple[int, float]]) -> list[float]:
    """The training loss (mean of the nearest 3 log lines) at 25, 50, 75 and 100 % of the tokens seen."""
    if not curve:
        return [float("nan")] * 4
    end = curve[-1][0]
    out = []
    for frac in (0.25, 0.5, 0.75, 1.0):
        i = min(range(len(curve)), key=lambda k: abs(curve[k][0] - frac * end))
        near = [loss for _, loss in curve[max(0, i - 1): i + 2]]
        out.append(sum(near) / len(near))
    return out


def measure(folders: list[Path], args) -> list[dict]:
    """Held-out bits/byte on the same chunks for every export, and the single-line eval when asked."""
    from diffucode import checkpoint
    from diffucode_evals.campaign import single_line
    from diffucode_evals.heldout import bits_per_byte, common_chunks, heldout_texts

    from diffucode.loading import load_engine
    from diffucode_evals.data import load_taskset
    from diffucode_evals.infill_bpb import infill_bits_per_byte

    models = [checkpoint.load(f / "export") for f in folders]
    tasks = load_taskset("single-line", data_dir=args.data_dir).tasks if args.data_dir else ()
    texts = common_chunks(heldout_texts(folders[0]), models, n=args.chunks)
    out = []
    for folder, ck in zip(folders, models):
        row = {"params": sum(t.numel() for t in ck.model.parameters()), "heldout_bpb": bits_per_byte(ck, texts),
               "chunks": len(texts)}
        if args.data_dir:
            row["infill_bpb"] = infill_bits_per_byte(load_engine(folder / "export"), tasks)
            p1, nonempty, n, _ = single_line(folder / "export", folder / "eval", Path(args.data_dir),
                                             limit=args.eval_limit)
            row.update(single_line_pass1=p1, single_line_nonempty=nonempty, single_line_tasks=n)
        out.append(row)
    return out


def report(rows: list[dict], args, extra: list[str]) -> None:
    where = f", each continuing {args.from_run}" if args.from_run else ""
    print(f"\n{args.seconds} s of training per variant{where}; common flags: {' '.join(extra) or '(none)'}\n")
    head = ("| variant | params | tokens seen | training loss at 25/50/75/100 % | held-out bits/byte "
            "| infill exact, oracle length | infill exact, auto length |")
    sl = args.data_dir is not None
    print(head + (f" single-line fills, bits/byte | single-line pass@1 ({rows[0].get('single_line_tasks', '?')} "
                  "tasks) | non-empty |" if sl else ""))
    print("|---|---:|---:|---|---:|---:|---:|" + ("---:|---:|---:|" if sl else ""))
    for r in rows:
        ev = r["eval"]
        cells = [r["variant"], f"{r['params'] / 1e6:.1f} M", f"{r['tokens'] / 1e6:.1f} M",
                 " / ".join(f"{x:.2f}" for x in r["loss_at"]), f"{r['heldout_bpb']:.3f}",
                 f"{ev.get('infill_oracle_exact', float('nan')):.1%}",
                 f"{ev.get('infill_auto_exact', float('nan')):.1%}"]
        if sl:
            cells += [f"{r['infill_bpb']:.4f}", f"{100 * r['single_line_pass1']:.2f} %",
                      f"{100 * r['single_line_nonempty']:.1f} %"]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", choices=list(STUDIES), default="objective", help="which variants to train")
    ap.add_argument("--out", required=True, help="parent folder of the variants' run folders")
    ap.add_argument("--seconds", type=int, default=300, help="training seconds per variant (--train-seconds)")
    ap.add_argument("--overhead", type=int, default=300,
                    help="seconds allowed on top for data preparation, compilation, evaluation and export")
    ap.add_argument("--only", nargs="*", help="run only these variants (names as listed above)")
    ap.add_argument("--chunks", type=int, default=512, help="held-out chunks for bits/byte")
    ap.add_argument("--data-dir", default=None, help="benchmark data folder: also run `diffucode eval single-line`")
    ap.add_argument("--eval-limit", type=int, default=0, help="first N single-line tasks (0: all 1,033)")
    ap.add_argument("--from-run", default=None,
                    help="every variant continues this run folder's checkpoint (a branch of it) with the campaign's "
                         "schedule, for --seconds")
    ap.add_argument("--parallel", action="store_true", help="train every variant at once, one thread each")
    ap.add_argument("--measure-only", action="store_true",
                    help="do not train: measure the variants' exports already under --out (give the study's "
                         "--seconds and --from-run: study.json records them)")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="after --: flags for every `diffucode train` call")
    args = ap.parse_args()
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    variants = STUDIES[args.study]
    names = args.only or list(variants)
    unknown = [n for n in names if n not in variants]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; {args.study} has {list(variants)}")
    folders = [Path(args.out) / slug(name) for name in names]
    if not args.measure_only:
        train_all(folders, [variants[name] for name in names], args, extra)
    rows = []
    for name, folder in zip(names, folders):
        config = json.loads((folder / "export" / "config.json").read_text())
        curve = loss_curve(folder)
        step0, tokens0 = start_of(folder)
        ev = config["training"].get("eval", {})  # a branch's export carries the parent's last one until it evaluates
        rows.append({"variant": name, "tokens": config["training"].get("tokens_seen", 0) - tokens0,
                     "eval": ev if ev.get("step", 0) > step0 else {},
                     "loss_at": at_fractions(curve), "curve": curve})
    for row, measured in zip(rows, measure(folders, args)):
        row.update(measured)
    Path(args.out, "study.json").write_text(json.dumps({"seconds": args.seconds, "common_flags": extra,
                                                        "from_run": args.from_run, "rows": rows}, indent=1) + "\n")
    report(rows, args, extra)


if __name__ == "__main__":
    sys.exit(main())

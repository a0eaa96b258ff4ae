"""Studies at equal wall time: train one model per variant for the same training seconds, on the same
data, then measure every export the same way.

    # what each part of the objective buys (from scratch, the campaign's shape and data)
    python benchmarks/equal_time.py --study objective --out runs/ablate --seconds 900 \
        --data-dir ../shared/data -- --data-from ~/.cache/diffucode/campaign --batch-size 64 --seq-len 256
    # which model size (three shapes, the same data and batch)
    python benchmarks/equal_time.py --study size --out runs/sizes --seconds 900 \
        --data-dir ../shared/data -- --data-from ~/.cache/diffucode/campaign --batch-size 64 --seq-len 256
    python benchmarks/equal_time.py --out /tmp/ablate --seconds 40 -- --smoke --device cpu   # a CPU check

Studies (each variant's flags go to `diffucode train` after the common flags given after --):
  objective   uniform only (MDLM/LLaDA, 1/t weights); + infill over random whole lines (60/40);
              + infill over syntax spans (the same with 60 % of the spans from syntax nodes);
              all (the defaults: 50 % uniform, 35 % infill, 15 % function body after signature + docstring)
  size        192 x 4, 256 x 6 (the campaign's shape), 384 x 6; heads of 64 dimensions

Each variant is a `diffucode train` run folder under --out (a training budget of --seconds with the default
cosine schedule, so every run ends decayed; an export). Rerunning with the same --out would resume those
folders: give a new --out (or delete it) for a new study. With `--data-from RUN` among the common flags
every variant trains on that run's prepared tokens and nothing is rebuilt. Printed per variant: parameters,
tokens seen, the training loss at 25/50/75/100 % of the run, held-out bits per byte (evals/heldout.py: the
same chunks for every variant), exact single-line infill with the oracle and the automatic length (the run's
own evaluation), and with --data-dir, pass@1 and the non-empty share of `diffucode eval single-line`
(--eval-limit tasks). A JSON file with the same rows and each run's training-loss curve is written to
OUT/study.json.
"""

from __future__ import annotations

import argparse
import json
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
    "size": {
        "192 x 4": ["--preset", "mini", "--d-model", "192", "--n-layers", "4", "--n-heads", "3"],
        "256 x 6": ["--preset", "mini", "--d-model", "256", "--n-layers", "6", "--n-heads", "4"],
        "384 x 6": ["--preset", "mini", "--d-model", "384", "--n-layers", "6", "--n-heads", "6"],
    },
}


def slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name).split())


def train(folder: Path, flags: list[str], args, extra: list[str]) -> dict:
    """Train and export one variant; the exported config.json (its training record and model shape)."""
    export = folder / "export"
    cmd = [sys.executable, "-m", "diffucode.training", "--out", str(folder), "--train-seconds", str(args.seconds),
           "--time-budget", str(args.seconds + args.overhead), "--export", str(export), *extra, *flags]
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((export / "config.json").read_text())


def loss_curve(folder: Path) -> list[tuple[int, float]]:
    """(tokens, training loss) of every logged step of the run."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["tokens"], r["loss"]) for r in rows if r.get("kind") == "train" and "loss" in r]


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

    models = [checkpoint.load(f / "export") for f in folders]
    texts = common_chunks(heldout_texts(folders[0]), models, n=args.chunks)
    out = []
    for folder, ck in zip(folders, models):
        row = {"params": sum(t.numel() for t in ck.model.parameters()), "heldout_bpb": bits_per_byte(ck, texts),
               "chunks": len(texts)}
        if args.data_dir:
            p1, nonempty, n, _ = single_line(folder / "export", folder / "eval", Path(args.data_dir),
                                             limit=args.eval_limit)
            row.update(single_line_pass1=p1, single_line_nonempty=nonempty, single_line_tasks=n)
        out.append(row)
    return out


def report(rows: list[dict], args, extra: list[str]) -> None:
    print(f"\n{args.seconds} s of training per variant; common flags: {' '.join(extra) or '(none)'}\n")
    head = ("| variant | params | tokens seen | training loss at 25/50/75/100 % | held-out bits/byte "
            "| infill exact, oracle length | infill exact, auto length |")
    sl = args.data_dir is not None
    print(head + (f" single-line pass@1 ({rows[0].get('single_line_tasks', '?')} tasks) | non-empty |" if sl else ""))
    print("|---|---:|---:|---|---:|---:|---:|" + ("---:|---:|" if sl else ""))
    for r in rows:
        ev = r["eval"]
        cells = [r["variant"], f"{r['params'] / 1e6:.1f} M", f"{r['tokens'] / 1e6:.1f} M",
                 " / ".join(f"{x:.2f}" for x in r["loss_at"]), f"{r['heldout_bpb']:.3f}",
                 f"{ev.get('infill_oracle_exact', float('nan')):.1%}",
                 f"{ev.get('infill_auto_exact', float('nan')):.1%}"]
        if sl:
            cells += [f"{100 * r['single_line_pass1']:.2f} %", f"{100 * r['single_line_nonempty']:.1f} %"]
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
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="after --: flags for every `diffucode train` call")
    args = ap.parse_args()
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    variants = STUDIES[args.study]
    names = args.only or list(variants)
    unknown = [n for n in names if n not in variants]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; {args.study} has {list(variants)}")
    rows, folders = [], []
    for name in names:
        folder = Path(args.out) / slug(name)
        config = train(folder, variants[name], args, extra)
        curve = loss_curve(folder)
        rows.append({"variant": name, "tokens": config["training"].get("tokens_seen", 0),
                     "eval": config["training"].get("eval", {}),
                     "loss_at": at_fractions(curve), "curve": curve})
        folders.append(folder)
    for row, measured in zip(rows, measure(folders, args)):
        row.update(measured)
    Path(args.out, "study.json").write_text(json.dumps({"seconds": args.seconds, "common_flags": extra,
                                                        "rows": rows}, indent=1) + "\n")
    report(rows, args, extra)


if __name__ == "__main__":
    sys.exit(main())

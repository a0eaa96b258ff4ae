"""What each part of the training objective buys: train one model per mixture for the same wall time,
then compare them on the held-out metrics and, optionally, on an eval harness task set.

    python benchmarks/ablate_objective.py --out runs/ablate --seconds 300 \
        --eval humaneval-infill-single --eval-limit 200 --data-dir ../shared/data -- --preset small --n-layers 7
    python benchmarks/ablate_objective.py --out /tmp/ablate --seconds 40 -- --smoke --device cpu   # a CPU check

Variants (masking.py's row mixture; everything else is the same for all, including the flags after --):
  uniform only             every row uniformly masked (MDLM/LLaDA, 1/t weights)
  + infill, line spans     60 % uniform, 40 % variable-length infill holes over random whole lines
  + infill, syntax spans   the same with 60 % of the spans from syntax nodes (statements, blocks, bodies...)
  all (defaults)           50 % uniform, 35 % infill, 15 % function body after signature + docstring

Each variant is a fresh `diffucode train` run folder under --out (its own data preparation, a training
budget of --seconds, an export), so a rerun resumes nothing: delete --out to start over. Printed per
variant: tokens seen, held-out ELBO (bits/byte), exact single-line infill with the oracle length and
with the model choosing it (the training evaluation), and pass@1 on --eval when given.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

VARIANTS = {
    "uniform only": ["--p-uniform", "1", "--p-infill", "0", "--p-body", "0"],
    "+ infill, line spans": ["--p-uniform", "0.6", "--p-infill", "0.4", "--p-body", "0", "--p-syntax-span", "0"],
    "+ infill, syntax spans": ["--p-uniform", "0.6", "--p-infill", "0.4", "--p-body", "0", "--p-syntax-span", "0.6"],
    "all (defaults)": ["--p-uniform", "0.5", "--p-infill", "0.35", "--p-body", "0.15", "--p-syntax-span", "0.6"],
}


def slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name).split())


def train(folder: Path, flags: list[str], args, extra: list[str]) -> dict:
    """Train and export one variant; the exported config.json's training record."""
    export = folder / "export"
    cmd = [sys.executable, "-m", "diffucode.training", "--out", str(folder), "--train-seconds", str(args.seconds),
           "--time-budget", str(args.seconds + args.overhead), "--export", str(export), *flags, *extra]
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((export / "config.json").read_text())["training"]


def evaluate(folder: Path, args) -> float:
    """pass@1 (%) of the exported model on --eval."""
    out = folder / "eval"
    cmd = [sys.executable, "-m", "diffucode", "eval", args.eval, "--model", str(folder / "export"), "--out", str(out),
           "--overwrite", "--quiet", "--device", args.device]
    cmd += ["--limit", str(args.eval_limit)] if args.eval_limit else []
    cmd += ["--data-dir", args.data_dir] if args.data_dir else []
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())["pass@1"] * 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="parent folder of the variants' run folders")
    ap.add_argument("--seconds", type=int, default=300, help="training seconds per variant (--train-seconds)")
    ap.add_argument("--overhead", type=int, default=240,
                    help="seconds allowed on top for data preparation, compilation, evaluation and export")
    ap.add_argument("--only", nargs="*", choices=list(VARIANTS), help="run only these variants")
    ap.add_argument("--eval", default=None, help="also score each export on this eval task set (pass@1)")
    ap.add_argument("--eval-limit", type=int, default=None, help="first N tasks of --eval")
    ap.add_argument("--data-dir", default=None, help="benchmark data folder for --eval")
    ap.add_argument("--device", default="cpu", help="device for --eval generation")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="after --: flags for every `diffucode train` call")
    args = ap.parse_args()
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    rows = []
    for name in args.only or VARIANTS:
        folder = Path(args.out) / slug(name)
        record = train(folder, VARIANTS[name], args, extra)
        ev = record.get("eval", {})
        pass1 = evaluate(folder, args) if args.eval else None
        rows.append((name, record.get("tokens_seen", 0), ev, pass1))

    print(f"\n{args.seconds} s of training per variant; extra flags: {' '.join(extra) or '(none)'}\n")
    head = ("| variant | tokens seen | held-out ELBO (bits/byte) | infill exact, oracle length "
            "| infill exact, auto length |")
    print(head + (f" {args.eval} pass@1 |" if args.eval else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|" if args.eval else ""))
    for name, tokens, ev, pass1 in rows:
        cells = [name, f"{tokens / 1e6:.1f} M", f"{ev.get('elbo_bpb', float('nan')):.3f}",
                 f"{ev.get('infill_oracle_exact', float('nan')):.1%}",
                 f"{ev.get('infill_auto_exact', float('nan')):.1%}"]
        if args.eval:
            cells.append(f"{pass1:.2f} %")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())

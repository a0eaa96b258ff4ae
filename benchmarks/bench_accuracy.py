"""What each speed-up costs in pass@1, measured with the eval harness on the same tasks in one run.

    python benchmarks/bench_accuracy.py --data-dir ../shared/data               # embedded model, 200 tasks
    python benchmarks/bench_accuracy.py --model FOLDER --limit 1033 --device cuda --compile
    python benchmarks/bench_accuracy.py --taskset humaneval --limit 164

Every variant generates completions for the same tasks (greedy, the same seeds; generation is timed
on its own, with the model warm, before any test runs) and then runs their unit tests in the
harness's sandbox. Printed per variant: pass@1, its delta in points against the reference
decoder, generation time and speed-up (forwards per token: bench_engine.py), and how
many completions are identical to the reference's — so no speed-up is reported without its price.

Variants, each on top of the editor defaults (`InfillSettings()`), the model choosing the hole length:
reference (one token per forward, no cache), 2 tokens per forward, + threshold 0.9, + K/V cache
(= the defaults), entropy bound 1.0 instead of the threshold, early stop 0.9 instead of the threshold;
with --int8 / --compile also the defaults with dynamic int8 layers / torch.compile.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from diffucode_evals.data import load_taskset
from diffucode_evals.model_generator import ModelGenerator
from diffucode_evals.runner import SAMPLES, RunConfig, evaluate

REFERENCE = {"exact": True, "steps": 100_000}  # the step schedule is capped at the hole: one token per forward
VARIANTS = {
    "reference: one token per forward": REFERENCE,
    "2 tokens per forward": {"exact": True},
    "+ threshold 0.9": {"cache_refresh": None},
    "+ K/V cache 4 (defaults)": {},
    "entropy bound 1.0, cache": {"threshold": None, "entropy_bound": 1.0},
    "early stop 0.9, cache": {"threshold": None, "early_stop": 0.9},
}


def run_variant(name: str, overrides: dict, args, taskset, out: Path, load_options: dict) -> dict:
    """Generate every completion first (timed alone, model loaded and warm), then run the tests."""
    gen = ModelGenerator(args.model, device=args.device, load_options=load_options)
    gen.knobs = dict(overrides)  # raw InfillSettings fields (None turns a speed-up off), seeds added per task
    t = time.perf_counter()
    gen._load()
    load_s = time.perf_counter() - t
    gen(taskset.tasks[0], 1)  # warm: lazy imports, parsers, allocator (sample 1 is not part of the run)
    folder = out / "".join(c if c.isalnum() else "-" for c in name)
    config = RunConfig(out_dir=folder, workers=args.workers, progress=False, identity={"variant": name}, report=False)
    evaluate(taskset, gen, replace(config, generate_only=True), stream=None)
    summary = evaluate(taskset, gen, config, stream=None)  # executes the samples just written
    samples, gen_s = {}, 0.0
    with open(folder / SAMPLES, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            samples[rec["task_id"]] = rec["completion"]
            gen_s += rec["generate_s"]  # the generation call alone
    return {"pass1": summary["pass@1"] * 100, "gen_s": gen_s, "load_s": load_s, "samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--taskset", default="humaneval-infill-single", help="a diffucode eval task set")
    ap.add_argument("--limit", type=int, default=200, help="first N tasks (default 200)")
    ap.add_argument("--data-dir", default=None, help="benchmark data folder (as for diffucode eval)")
    ap.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=None, help="programs run in parallel")
    ap.add_argument("--int8", action="store_true", help="also the defaults with dynamic int8 linear layers (CPU)")
    ap.add_argument("--compile", action="store_true", help="also the defaults with torch.compile "
                                                           "(reduce-overhead on CUDA, default on CPU)")
    ap.add_argument("--out", default=None, help="keep the eval folders here (default: a temporary folder)")
    args = ap.parse_args()
    taskset = load_taskset(args.taskset, data_dir=args.data_dir, allow_hub=False).select(limit=args.limit)
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-accuracy-"))
    variants = {name: (o, {}) for name, o in VARIANTS.items()}
    if args.int8:
        variants["defaults + int8"] = ({}, {"quantize": "int8"})
    if args.compile:
        variants["defaults + torch.compile"] = (
            {}, {"compile": "reduce-overhead" if args.device.startswith("cuda") else "default"})
    print(f"model: {args.model or 'embedded'}; {taskset.name}, first {len(taskset.tasks)} tasks; device {args.device}; "
          f"eval folders in {out}\n")
    print("| decoding | pass@1 | Δ vs reference (points) | generation (s) | speed-up | same completion as reference |")
    print("|---|---:|---:|---:|---:|---:|")
    ref = None
    for name, (overrides, load_options) in variants.items():
        r = run_variant(name, overrides, args, taskset, out, load_options)
        ref = ref or r
        same = sum(r["samples"][t] == ref["samples"].get(t) for t in r["samples"]) / max(1, len(r["samples"]))
        note = f" (+{r['load_s']:.0f} s to load/compile)" if load_options else ""
        print(f"| {name} | {r['pass1']:.2f} % | {r['pass1'] - ref['pass1']:+.2f} | {r['gen_s']:.1f}{note} | "
              f"{ref['gen_s'] / r['gen_s']:.2f}× | {same:.0%} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())

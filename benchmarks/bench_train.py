"""Training speed on this CPU: tokens/s of the real training step, and what share of the machine's
matmul peak it reaches, measured in one run and printed as a table.

    python benchmarks/bench_train.py --run ~/.cache/diffucode/campaign     # a prepared run's data
    python benchmarks/bench_train.py                                      # builds a small stdlib run first

The step is diffucode train's own: a micro-batch from the objective (masking.BatchSource through
batches.MicroBatches), the LossNet forward (trunk + loss only at the predicted positions), backward,
gradient clipping and AdamW, with the threads `diffucode train` sets on a CPU. For every model size and
every variant (eager fp32, eager bf16 autocast, torch.compile fp32, torch.compile bf16) it reports the
median step's tokens/s and GFLOP/s (flops.train_flops) and their share of the matmul peak of the same
precision, measured here first (best of several large square matmuls). Only ratios inside one run
mean anything on a shared machine: run it alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from diffucode.model import DiffusionTransformer, preset
from diffucode.tokenizer import Tokenizer
from diffucode.training import cli as train_cli
from diffucode.training.batches import MicroBatches
from diffucode.training.cpu_runtime import autocast, cpu_threads
from diffucode.training.flops import train_flops
from diffucode.training.masking import BatchSource, MaskingConfig, Specials
from diffucode.training.objective import LossNet
from diffucode.training.token_store import TokenStore
from diffucode.training.vocab import token_tables

VARIANTS = {"eager fp32": (False, "fp32"), "eager bf16": (False, "bf16"),
            "compile fp32": (True, "fp32"), "compile bf16": (True, "bf16")}


def matmul_peak(precision: str, *, n: int = 2048, reps: int = 5) -> float:
    """Best FLOP/s of an n x n x n matmul in `precision` (bf16 inputs for bf16)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def prepared_run(root: Path) -> Path:
    """A small run folder (300 stdlib files, 4 k vocabulary) when no --run is given."""
    out = root / "run"
    rc = train_cli.main(["--out", str(out), "--prepare-only", "--smoke", "--vocab-size", "4096", "--max-files", "300",
                     "--no-decontaminate", "--quiet"])
    if rc:
        raise SystemExit(rc)
    return out


def time_steps(run: Path, size: tuple[int, int], compiled: bool, precision: str, *, batch: int, seq: int, steps: int):
    """(median seconds per step, FLOPs per step, parameters) of the real training step."""
    tok = Tokenizer.from_file(run / "tokenizer.json")
    _, ends_line = token_tables(tok)
    d, layers = size
    mc = preset("mini", d_model=d, n_layers=layers, n_heads=max(1, d // 64), vocab_size=tok.vocab_size, max_seq_len=seq)
    torch.manual_seed(0)
    model = DiffusionTransformer(mc)
    net = LossNet(model, compiled)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    source = BatchSource(TokenStore(run / "data", "train"), MaskingConfig(), seq, ends_line,
                         Specials(tok.mask_id, tok.pad_id), rows=batch, seed=0)
    batches = MicroBatches(source, batch_size=batch, micro=batch, accum=1, world=1, rank=0)
    amp = autocast(precision, torch.device("cpu"))
    times, heads = [], []
    for i in range(steps + 2):  # two warm-up steps (the compiled build happens in the first)
        t0 = time.perf_counter()
        b = batches[i]
        with amp():
            loss, _ = net(b["ids"], b["sel"], b["targets"], b["w"])
        (loss / batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - t0)
            heads.append(b["sel"].numel())
    flops = train_flops(mc, model.num_params(), seq_len=seq, tokens=batch * seq, head_positions=statistics.mean(heads))
    return statistics.median(times), flops, model.num_params()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path,
                    help="a prepared run folder (diffucode train --prepare-only); default: build a small one")
    ap.add_argument("--sizes", default="192x4,256x6,384x6",
                    help="model sizes, width x layers (default: 192x4,256x6,384x6)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"which of: {', '.join(VARIANTS)}")
    ap.add_argument("--batch", type=int, default=16, help="rows per step (default 16)")
    ap.add_argument("--seq", type=int, default=256, help="tokens per row (default 256)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per configuration (default 8)")
    args = ap.parse_args()
    torch.set_num_threads(cpu_threads())
    torch.set_flush_denormal(True)
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or prepared_run(Path(tmp))
        peaks = {p: matmul_peak(p) for p in ("fp32", "bf16")}
        print(f"{torch.get_num_threads()} threads; matmul peak: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
              f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; batch {args.batch} x {args.seq}\n")
        print("| size | params | variant | tok/s | GFLOP/s | share of the peak | vs eager fp32 |")
        print("|---|---|---|---|---|---|---|")
        for size in sizes:
            base = None
            for v in variants:
                compiled, precision = VARIANTS[v]
                sec, flops, n = time_steps(run, size, compiled, precision,
                                           batch=args.batch, seq=args.seq, steps=args.steps)
                tok_s = args.batch * args.seq / sec
                base = base or (tok_s if v == "eager fp32" else None)
                print(f"| {size[0]}x{size[1]} | {n / 1e6:.1f} M | {v} | {tok_s / 1e3:.1f} k "
                      f"| {flops / sec / 1e9:.0f} | {100 * flops / sec / peaks[precision]:.0f} % "
                      f"| {f'{tok_s / base:.2f}x' if base else '-'} |", flush=True)


if __name__ == "__main__":
    main()

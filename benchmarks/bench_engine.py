"""CPU speed of the core engine, measured in one run and printed as tables.

    python benchmarks/bench_engine.py                      # the embedded model, else a random `small` one
    python benchmarks/bench_engine.py --model FOLDER       # any diffucode model folder
    python benchmarks/bench_engine.py --preset small       # random weights of a preset (speed only)

Reports: forward time at 128/512/1024 tokens (all logits vs logits at 16 positions), single-line
infill latency p50/p95 with the model warm over real holes (HumanEval-SingleLineInfilling when the
data is found, else lines of this repository's own code), and tokens committed per forward pass in
threshold mode vs one token per step. Random weights give honest timings but not honest
tokens-per-forward (confidence depends on training): the table says which model was used.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from diffucode.infill import InfillSettings, infill
from diffucode.models import EMBEDDED, load_engine
from diffucode.testing import random_model

ROOT = Path(__file__).resolve().parents[1]
INFILL_DATA = ROOT.parent / "shared" / "data" / "human-eval-infilling" / "HumanEval-SingleLineInfilling.jsonl.gz"


def timeit(fn, *, repeat: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def holes(n: int) -> list[tuple[str, int, int]]:
    """(source, start, end) single-line holes: the official set if present, else lines of diffucode's code."""
    out = []
    if INFILL_DATA.is_file():
        with gzip.open(INFILL_DATA, "rt") as f:
            rows = [json.loads(line) for line in f]
        for r in rows[:: max(1, len(rows) // n)][:n]:
            src = r["prompt"] + r["canonical_solution"] + r["suffix"]
            out.append((src, len(r["prompt"]), len(r["prompt"]) + len(r["canonical_solution"])))
        return out
    text = (ROOT / "diffucode" / "sampler.py").read_text()
    starts = [i + 1 for i, c in enumerate(text) if c == "\n"]
    for a, b in list(zip(starts, starts[1:]))[40 : 40 + n]:
        out.append((text, a, b))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: embedded, else random --preset)")
    ap.add_argument("--preset", default="small", help="random-weight preset when no model is given")
    ap.add_argument("--holes", type=int, default=20, help="single-line holes to time")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        folder, label = Path(args.model), args.model
    elif (EMBEDDED / "config.json").is_file():
        folder, label = EMBEDDED, "embedded default"
    else:
        folder = random_model(Path(tempfile.mkdtemp()) / "m", preset_name=args.preset, vocab_size=4096)
        label = f"random {args.preset} (vocab 4096)"
    eng = load_engine(folder)
    model = eng.denoiser.model
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {label}; {n_params / 1e6:.1f} M parameters; context {eng.denoiser.max_seq_len}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")

    print("| tokens | forward, all logits (ms) | logits at 16 positions (ms) | ratio |")
    print("|---:|---:|---:|---:|")
    for T in (128, 512, 1024):
        if T > eng.denoiser.max_seq_len:
            continue
        ids = torch.randint(5, eng.tokenizer.vocab_size, (1, T))
        pos = torch.arange(T // 2, T // 2 + 16)
        with torch.inference_mode():
            full = statistics.median(timeit(lambda: model(ids), repeat=5))
            part = statistics.median(timeit(lambda: model(ids, positions=pos), repeat=5))
        print(f"| {T} | {full:.1f} | {part:.1f} | {full / part:.2f}× |")

    cases = holes(args.holes)
    print(f"\nsingle-line infill over {len(cases)} holes ({'HumanEval-SingleLineInfilling' if INFILL_DATA.is_file() else 'repository lines'}), "
          "hole of 16 tokens, model warm, validation on:\n")
    print("| decoding | p50 (ms) | p95 (ms) | speed-up vs one per step (p50) | forwards/hole | tokens per forward |")
    print("|---|---:|---:|---:|---:|---:|")
    modes = {
        "one token per step": InfillSettings(length_mode="fixed", length=16, steps=16),
        "8 steps (2 tokens/step)": InfillSettings(length_mode="fixed", length=16, steps=8),
        "threshold 0.9": InfillSettings(length_mode="fixed", length=16, steps=16, threshold=0.9),
        "one per step + K/V cache (refresh 4)": InfillSettings(length_mode="fixed", length=16, steps=16, cache_refresh=4),
        "threshold 0.9 + K/V cache (refresh 4)": InfillSettings(length_mode="fixed", length=16, steps=16, threshold=0.9, cache_refresh=4),
    }
    base = None
    for name, st in modes.items():
        infill(eng, *cases[0][:1], [cases[0][1:]], st)  # warm
        lat, fw = [], []
        for src, s, e in cases:
            t = time.perf_counter()
            r = infill(eng, src, [(s, e)], st)
            lat.append((time.perf_counter() - t) * 1e3)
            fw.append(r.forwards)
        mean_fw = statistics.mean(fw)
        base = base or statistics.median(lat)
        print(f"| {name} | {statistics.median(lat):.0f} | {pct(lat, 0.95):.0f} | {base / statistics.median(lat):.2f}× | "
              f"{mean_fw:.1f} | {16 / mean_fw:.2f} |")
    print("\n(threshold-mode tokens per forward reflect this model's confidence; random weights are rarely confident)")


if __name__ == "__main__":
    sys.exit(main())

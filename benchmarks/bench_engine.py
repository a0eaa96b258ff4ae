"""CPU speed of the core engine, measured in one run and printed as tables.

    python benchmarks/bench_engine.py                      # the embedded model, else a random `small` one
    python benchmarks/bench_engine.py --model FOLDER       # any diffucode model folder
    python benchmarks/bench_engine.py --preset small       # random weights of a preset (speed only)

Reports, all measured in this run:
1. forward time at 128/512/1024 tokens (all logits vs logits at 16 positions);
2. CPU precision: fp32 vs bf16 vs dynamic int8 linear layers — forward time and how often the
   argmax agrees with fp32;
3. decoding: single-line infill latency p50/p95 with the model warm over real holes
   (HumanEval-SingleLineInfilling when the data is found, else lines of this repository's own code),
   hole of 16 tokens, for the reference decoder (one token per forward) and each speed-up, with
   forwards per generated token and how often the output equals the reference decoder's;
4. editor defaults: single-line and 3-line holes (HumanEval-MultiLineInfilling) with the settings the
   CLI and language server use (`InfillSettings()`) vs `exact=True`, the model choosing the length,
   and the language server's load (`quantize="auto"`: int8 where it measures faster here);
5. with --compile: the editor defaults eager vs `torch.compile`d, and what compiling costs up front.
Random weights give honest timings but not honest tokens-per-forward (confidence depends on
training): the header says which model was used.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from diffucode.infill import InfillSettings, infill
from diffucode.loading import EMBEDDED, load_engine, quantize_int8
from diffucode.testing import random_model

ROOT = Path(__file__).resolve().parents[1]
INFILL_DIR = ROOT.parent / "shared" / "data" / "human-eval-infilling"
SINGLE = INFILL_DIR / "HumanEval-SingleLineInfilling.jsonl.gz"
MULTI = INFILL_DIR / "HumanEval-MultiLineInfilling.jsonl.gz"


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


def holes(n: int, lines: int = 1) -> list[tuple[str, int, int]]:
    """(source, start, end) holes of `lines` lines: the official sets if present, else diffucode's own code."""
    path = SINGLE if lines == 1 else MULTI
    out = []
    if path.is_file():
        with gzip.open(path, "rt") as f:
            rows = [json.loads(line) for line in f]
        rows = [r for r in rows if r["canonical_solution"].count("\n") == lines]
        for r in rows[:: max(1, len(rows) // n)][:n]:
            src = r["prompt"] + r["canonical_solution"] + r["suffix"]
            out.append((src, len(r["prompt"]), len(r["prompt"]) + len(r["canonical_solution"])))
        return out
    text = (ROOT / "diffucode" / "sampler.py").read_text()
    starts = [i + 1 for i, c in enumerate(text) if c == "\n"]
    return [(text, a, b) for a, b in list(zip(starts, starts[lines:]))[40 : 40 + n]]


def forward_table(eng) -> None:
    model = eng.denoiser.model
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


def precision_table(eng, T: int = 256) -> None:
    """fp32 vs bf16 vs dynamic int8 on this CPU: forward time and argmax agreement with fp32."""
    fp32 = copy.deepcopy(eng.denoiser.model).float().eval()
    variants = {"fp32": fp32, "bf16": copy.deepcopy(fp32).to(torch.bfloat16),
                "int8 (dynamic, linear layers)": quantize_int8(copy.deepcopy(fp32))}
    T = min(T, eng.denoiser.max_seq_len)
    ids = torch.randint(5, eng.tokenizer.vocab_size, (4, T))
    pos = torch.arange(T // 2, T // 2 + 16).expand(4, -1)
    print(f"| weights | forward, 1×{T} tokens (ms) | forward, 4×{T} (ms) | speed-up vs fp32 (1×) | argmax = fp32 |")
    print("|---|---:|---:|---:|---:|")
    with torch.inference_mode():
        ref = fp32(ids, positions=pos).argmax(-1)
        base = None
        for name, m in variants.items():
            one = statistics.median(timeit(lambda: m(ids[:1], positions=pos[:1]), repeat=9, warmup=2))
            four = statistics.median(timeit(lambda: m(ids, positions=pos), repeat=5, warmup=1))
            agree = (m(ids, positions=pos).argmax(-1) == ref).float().mean().item()
            base = base or one
            print(f"| {name} | {one:.1f} | {four:.1f} | {base / one:.2f}× | {agree:.1%} |")


def run_modes(eng, cases, modes: dict, *, tokens: int | None) -> None:
    """One row per mode: latency, speed-up vs the first mode, forwards, and agreement with the first mode.
    A mode is InfillSettings for `eng`, or an (engine, InfillSettings) pair."""
    print("| decoding | p50 (ms) | p95 (ms) | speed-up (p50) | forwards/hole | forwards per token "
          "| same text as first row |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base, ref = None, None
    for name, st in modes.items():
        e = eng
        if isinstance(st, tuple):
            e, st = st
        infill(e, cases[0][0], [cases[0][1:]], st)  # warm
        lat, fw, toks, texts = [], [], [], []
        for src, s, end in cases:
            t = time.perf_counter()
            r = infill(e, src, [(s, end)], st)
            lat.append((time.perf_counter() - t) * 1e3)
            fw.append(r.forwards)
            c = r.candidates[0] if r.candidates else None
            toks.append(tokens or max(1, c.n_tokens if c else 0))
            texts.append(c.edits[0].text if c else None)
        p50 = statistics.median(lat)
        base = base or p50
        ref = ref or texts
        same = sum(a == b for a, b in zip(texts, ref)) / len(ref)
        print(f"| {name} | {p50:.0f} | {pct(lat, 0.95):.0f} | {base / p50:.2f}× | {statistics.mean(fw):.1f} | "
              f"{sum(fw) / sum(toks):.2f} | {same:.0%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: embedded, else random --preset)")
    ap.add_argument("--preset", default=None, help="time random weights of this preset (default: the embedded "
                                                   "model, else a random `small` one)")
    ap.add_argument("--holes", type=int, default=20, help="holes to time per table")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile'd decoding (compiles for a while first)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        folder, label = Path(args.model), args.model
    elif args.preset is None and (EMBEDDED / "config.json").is_file():
        folder, label = EMBEDDED, "embedded default"
    else:
        preset_name = args.preset or "small"
        folder = random_model(Path(tempfile.mkdtemp()) / "m", preset_name=preset_name, vocab_size=4096)
        label = f"random {preset_name} (vocab 4096)"
    eng = load_engine(folder)
    n_params = sum(p.numel() for p in eng.denoiser.model.parameters())
    print(f"model: {label}; {n_params / 1e6:.1f} M parameters; context {eng.denoiser.max_seq_len}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    forward_table(eng)
    print("\nCPU precision (logits at 16 positions):\n")
    precision_table(eng)

    cases = holes(args.holes)
    print(f"\nsingle-line infill over {len(cases)} holes "
          f"({'HumanEval-SingleLineInfilling' if SINGLE.is_file() else 'repository lines'}), "
          "hole of 16 tokens, model warm, validation on:\n")
    fixed = dict(length_mode="fixed", length=16)
    run_modes(eng, cases, {
        "reference: one token per forward": InfillSettings(**fixed, steps=16, exact=True),
        "8 steps (2 tokens per forward)": InfillSettings(**fixed, steps=8, exact=True),
        "threshold 0.9": InfillSettings(**fixed, steps=16, cache_refresh=None),
        "entropy bound 1.0": InfillSettings(**fixed, steps=16, threshold=None, entropy_bound=1.0, cache_refresh=None),
        "early stop 0.9": InfillSettings(**fixed, steps=16, threshold=None, early_stop=0.9, cache_refresh=None),
        "K/V cache (refresh 4)": InfillSettings(**fixed, steps=16, threshold=None),
        "threshold 0.9 + K/V cache (refresh 4)": InfillSettings(**fixed, steps=16),
        "threshold 0.9 + cache + 8 steps (defaults)": InfillSettings(**fixed),
    }, tokens=16)
    print("\n(forwards per token in threshold/entropy modes reflect this model's confidence; "
          "random weights are rarely confident)")

    auto = load_engine(folder, quantize="auto")  # the language server's default load
    rt = auto.runtime
    print(f"\nquantize auto (the language server's default): int8 measured {rt.get('int8_speedup', '?')}× per forward "
          f"at load, so it uses {'int8' if rt.get('quantize') == 'int8' else 'the float model'}")
    for lines in (1, 3):
        cases = holes(args.holes, lines)
        print(f"\neditor defaults, {lines}-line holes ({len(cases)}), hole length chosen automatically, "
              "validation on:\n")
        run_modes(eng, cases, {"exact=True": InfillSettings(exact=True), "defaults (CLI)": InfillSettings(),
                               "defaults + quantize auto (language server)": (auto, InfillSettings())},
                  tokens=None)

    if args.compile:
        t = time.perf_counter()
        compiled = load_engine(folder, compile="default")
        cost = time.perf_counter() - t - eng.load_seconds
        cases = holes(args.holes)
        print(f"\ntorch.compile (mode default, dynamic shapes): compilation and warm-up {cost:.1f} s, "
              f"paid once per process; editor defaults, 1-line holes ({len(cases)}):\n")
        run_modes(None, cases,
                  {"defaults, eager": (eng, InfillSettings()), "defaults, compiled": (compiled, InfillSettings())},
                  tokens=None)


if __name__ == "__main__":
    sys.exit(main())

"""CPU speed of the laptop-class families at their real 0.5 B shape (random weights), measured in one run.

    python benchmarks/bench_laptop.py                  # Qwen2.5-0.5B shape, 3 holes per row
    python benchmarks/bench_laptop.py --holes 3 --context 256 --shape tiny   # a quick check

The model is Qwen2.5-0.5B's shape (24 layers, width 896, 14 heads, 2 K/V heads, FFN 4864, vocabulary
151,936, tied embeddings) with random weights, saved once in two on-disk formats in a temporary folder
by a child process (so building it does not count in this process's peak memory):

* Open-dCoder (full attention, logits shifted): single-line and 3-line infill;
* dLLM's A2D BD3LM (blocks of 32): completion of one line and of three.

Each row decodes the same holes with the exact decoder (the authors' settings: one token per forward,
no threshold, no K/V cache, float32) and with diffucode's default fast path (InfillSettings(): commits
above 0.9 confidence, one forward per 2 tokens at most, the approximate K/V cache refreshed every 4
steps for full attention, the exact block cache for block models, int8 linear layers when they measure
faster on this CPU), and prints p50/p95 latency, their ratio, and each path's peak RSS (every path
runs in a process of its own, one engine loaded). Random
weights are honest about time per forward, not about how many tokens a confident model commits per
forward (the threshold rarely fires on them): the fast path's real-model gain is larger.
The holes are bench_engine.py's: HumanEval-SingleLine/MultiLineInfilling when ../shared/data has them, else
diffucode's own code; the context is cut to --context tokens around each hole for both rows.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench_engine import holes  # the same holes as the engine benchmark (a sibling script)
from diffucode import families
from diffucode.infill import InfillSettings, complete, infill
from diffucode.loading import load_engine

SHAPES = {  # Qwen2.5-0.5B (config.json of Qwen/Qwen2.5-0.5B) and a small one for a quick check
    "0.5B": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=4096),
}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<M>", "<|mask|>"]


# -- the checkpoints (child process) ---------------------------------------------------------------------
def build(folder: Path, shape: str) -> None:
    """Two folders under `folder`: open-dcoder-0.5B (qwen2 + <M>) and Qwen2.5-Coder-0.5B-...-bd3lm (a2d-qwen2)."""
    import transformers as tf
    from safetensors.torch import save_file
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    from diffucode.testing import stdlib_sample_texts

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(stdlib_sample_texts(), trainer=trainers.BpeTrainer(
        vocab_size=2000, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    cfg = dict(SHAPES[shape], max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
               hidden_act="silu", tie_word_embeddings=True, torch_dtype="float32")
    torch.manual_seed(0)
    with torch.no_grad():
        state = {k: v.contiguous() for k, v in tf.Qwen2ForCausalLM(tf.Qwen2Config(**cfg)).state_dict().items()
                 if k != "lm_head.weight"}
    formats = {"open-dcoder-0.5B": ({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}, "<M>"),
               "Qwen2.5-Coder-0.5B-Instruct-diffusion-bd3lm-v0.1": (
                   {"model_type": "a2d-qwen2", "architectures": ["A2DQwen2LMHeadModel"]}, "<|mask|>")}
    for name, (keys, mask) in formats.items():
        out = folder / name
        out.mkdir(parents=True)
        tok.save(str(out / "tokenizer.json"))
        (out / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "mask_token": mask}))
        (out / "config.json").write_text(json.dumps({**cfg, **keys}))
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})


# -- measuring -------------------------------------------------------------------------------------------
def fill(engine, case, settings):
    src, s, e = case
    return infill(engine, src, [(s, e)], settings)


def cont(engine, case, settings):
    src, s, _ = case
    return complete(engine, src, s, settings)


JOBS = {  # folder -> (job, preset, label)
    "open-dcoder-0.5B": (fill, "open-dcoder", "Open-dCoder infill"),
    "Qwen2.5-Coder-0.5B-Instruct-diffusion-bd3lm-v0.1": (cont, "a2d-bd3lm", "BD3LM complete"),
}


def settings_for(path: str, preset: str, lines: int, context: int, fill_job: bool) -> InfillSettings:
    budget = 16 * lines
    common = dict(validate=False, context="none", context_tokens=context, max_new_tokens=budget,
                  length=budget if fill_job else None)
    if path == "fast":
        return InfillSettings(**common)
    return InfillSettings(**{**families.preset_settings(preset), "temperature": 0.0, "top_k": None, "steps": budget,
                             **common})


def child(folder: Path, path: str, args) -> None:
    """One engine, one decoding path: latencies of every hole (s) and this process's peak RSS, as JSON."""
    job, preset, _ = JOBS[folder.name]
    engine = load_engine(folder, quantize="auto" if path == "fast" else None)
    out = {"runtime": engine.runtime, "rows": {}}
    for lines in (1, 3):
        cases = holes(args.holes, lines)
        settings = settings_for(path, preset, lines, args.context, job is fill)
        job(engine, cases[0], replace(settings, max_new_tokens=4, length=4 if job is fill else None,
                                      steps=2))  # warm-up
        lat = []
        for case in cases:
            t = time.perf_counter()
            job(engine, case, settings)
            lat.append(time.perf_counter() - t)
        out["rows"][lines] = lat
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=list(SHAPES), default="0.5B")
    ap.add_argument("--holes", type=int, default=3, help="holes per row")
    ap.add_argument("--context", type=int, default=256, help="tokens of code the model sees around each hole")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--paths", default="exact,fast", help="decoding paths to measure (exact,fast; ratios need both)")
    ap.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # child: write the folders and exit
    ap.add_argument("--child", nargs=2, metavar=("FOLDER", "PATH"), help=argparse.SUPPRESS)  # child: measure
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.build:
        return build(args.build, args.shape)
    if args.child:
        return child(Path(args.child[0]), args.child[1], args)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--shape", args.shape, "--build", tmp], check=True)
        print(f"# bench_laptop: random-weight {args.shape} Qwen2.5 shape, {args.threads} threads, {args.holes} holes "
              f"per row, context {args.context} tokens; built in {time.perf_counter() - t0:.0f} s\n", flush=True)
        measure(Path(tmp), args)


def measure(tmp: Path, args) -> None:
    """Each (model, path) in a child process of its own, so each peak RSS is that path's alone."""
    p50 = statistics.median
    p95 = (lambda xs: sorted(xs)[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))])
    print("| job | exact decoder p50 / p95 (s) | default fast path p50 / p95 (s) | speed-up (p50) "
          "| peak RSS exact / fast (GiB) |")
    print("|---|---:|---:|---:|---:|", flush=True)
    notes = []
    for name, (_, _, label) in JOBS.items():
        res = {p: {"rows": {"1": [math.nan], "3": [math.nan]}, "peak_rss_gib": math.nan, "runtime": None}
               for p in ("exact", "fast")}
        for path in args.paths.split(","):
            cmd = [sys.executable, __file__, "--holes", str(args.holes), "--context", str(args.context),
                   "--threads", str(args.threads), "--child", str(tmp / name), path]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            res[path] = json.loads(done.stdout.splitlines()[-1])
        for lines in ("1", "3"):
            ex, fa = res["exact"]["rows"][lines], res["fast"]["rows"][lines]
            print(f"| {label}, {lines} line(s), {16 * int(lines)} tokens | {p50(ex):.2f} / {p95(ex):.2f} | "
                  f"{p50(fa):.2f} / {p95(fa):.2f} | {p50(ex) / p50(fa):.2f}× | "
                  f"{res['exact']['peak_rss_gib']:.2f} / {res['fast']['peak_rss_gib']:.2f} |", flush=True)
        notes.append(f"{label}: fast path load choice {res['fast']['runtime']}")
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()

"""How the training step runs: threads, precision and compilation, chosen for this machine (CPU or CUDA).

Measured on a 2-core AVX-512 (BF16) machine (benchmarks/bench_train.py prints the table): the
default shape used to run with half the cores (1 thread: 4.1 k tok/s) in eager float32; with both
cores 7.1 k, with bfloat16 autocast 11.8 k. Whether bfloat16 pays depends on the processor (a CPU
without bf16 dot-product instructions emulates it and is slower), so `--precision auto` takes bf16
where the processor's flags list them, and where the flags cannot be read it times one matmul of the
model's shape both ways and keeps bf16 only where it is clearly faster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time

import torch

BF16_MIN_SPEEDUP = 1.2  # bf16 must be this much faster than fp32 to be chosen by `auto`
COMPILE_MIN_PARAMS = 1_000_000  # `--compile auto` on a CPU: only for models where the build pays off


def cpu_threads(world: int = 1) -> int:
    """All the cores this process may use, shared between the ranks of a CPU DDP run."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, world))


def bf16_speedup(d_model: int, *, rows: int = 2048, reps: int = 5) -> float:
    """fp32 time / bf16-autocast time of a (rows, d) x (d, 4d) matmul, interleaved, best of `reps`."""
    gen = torch.Generator().manual_seed(0)  # the global RNG is the training run's (a resumed run restores it)
    a, b = torch.randn(rows, d_model, generator=gen), torch.randn(4 * d_model, d_model, generator=gen)
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for _ in range(reps):
        for name in best:
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if name == "bf16" else contextlib.nullcontext()
            with ctx:
                t0 = time.perf_counter()
                for _ in range(3):
                    torch.nn.functional.linear(a, b)
                best[name] = min(best[name], time.perf_counter() - t0)
    return best["fp32"] / best["bf16"]


def native_bf16() -> bool | None:
    """Whether the processor has bf16 dot-product instructions (x86 avx512_bf16 / amx_bf16, Arm bf16), from
    /proc/cpuinfo; None where that cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            words = set(f.read().split())
    except OSError:
        return None
    return bool(words & {"avx512_bf16", "amx_bf16", "bf16"})


def choose_precision(mode: str, device: torch.device, d_model: int) -> tuple[str, str]:
    """(precision, why) for the training step: bf16 autocast on CUDA; on a CPU by `mode`, where `auto`
    reads the processor's flags (a timing taken while other work runs can say anything: one measured
    1.00x on a machine where a quiet one measures 2x) and measures only where they cannot be read."""
    if device.type == "cuda":
        return ("fp32", "--precision fp32") if mode == "fp32" else ("bf16", "CUDA")
    if mode != "auto":
        return mode, f"--precision {mode}"
    native = native_bf16()
    if native is not None:
        return ("bf16", "the CPU has bf16 dot products") if native else ("fp32", "the CPU has no bf16 dot products")
    ratio = bf16_speedup(d_model)
    return ("bf16" if ratio >= BF16_MIN_SPEEDUP else "fp32"), f"bf16 matmul measured {ratio:.2f}x fp32"


def autocast(precision: str, device: torch.device):
    """A context factory: bf16 autocast on `device` or nothing."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def compile_pays(device: torch.device, n_params: int) -> tuple[bool, str]:
    """Whether `--compile auto` compiles: on CUDA always; on a CPU for a model of at least
    COMPILE_MIN_PARAMS (the inductor build takes ~20-30 s, the compiled step is ~1.25x faster) when a
    C compiler is there to build it."""
    if device.type == "cuda":
        return True, "CUDA"
    if n_params < COMPILE_MIN_PARAMS:
        return False, f"a model under {COMPILE_MIN_PARAMS / 1e6:.0f} M parameters"
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("g++")):
        return False, "no C compiler found"
    return True, "CPU"


def compile_enabled(mode: str, device: torch.device, n_params: int = 0) -> bool:
    """Whether the training step is compiled: `auto` on CUDA, and on a CPU where it pays
    (compile_pays: not for tiny models, whose build takes longer than a smoke run); `on` forces it
    anywhere, so the compiled step can be tested without a GPU."""
    return mode == "on" or (mode == "auto" and compile_pays(device, n_params)[0])

"""Randomly initialised models for tests and speed benchmarks (timings do not depend on the weights).

The tokenizer is trained on a few standard-library modules, so it works offline anywhere Python does.
"""

from __future__ import annotations

import functools
import sysconfig
from pathlib import Path

import torch

from diffucode import checkpoint
from diffucode.model import DiffusionTransformer, preset
from diffucode.tokenizer import Tokenizer

_MODULES = ("textwrap.py", "string.py", "bisect.py", "heapq.py", "fnmatch.py", "shlex.py", "colorsys.py", "keyword.py")


def stdlib_sample_texts() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [(root / m).read_text(encoding="utf-8") for m in _MODULES if (root / m).is_file()]


def random_model(
    folder: str | Path,
    *,
    preset_name: str = "tiny",
    vocab_size: int = 512,
    seed: int = 0,
    pad_tail: bool = False,
    dtype: torch.dtype | None = None,
    **overrides,
) -> Path:
    """Write a random-weight diffucode model folder and return its path."""
    tok = sample_tokenizer(vocab_size)
    torch.manual_seed(seed)
    model = DiffusionTransformer(preset(preset_name, vocab_size=tok.vocab_size, **overrides))
    meta = {"infill": {"pad_tail": pad_tail}, "training": {"note": "random weights (tests/benchmarks only)"}}
    return checkpoint.save(folder, model, tok, meta=meta, dtype=dtype)


@functools.cache
def sample_tokenizer(vocab_size: int = 512) -> Tokenizer:
    """A small BPE trained on a few standard-library modules (cached: training takes ~2 s)."""
    return Tokenizer.train(stdlib_sample_texts(), vocab_size=vocab_size)

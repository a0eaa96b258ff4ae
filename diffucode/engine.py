"""What a loaded model is to the rest of diffucode: a denoiser, a tokenizer, and what the model declares.

A leaf: the infill API reads an Engine, the loaders (loading.py, families/) build one. Capabilities a
family has beyond the Denoiser protocol are declared here as fields, so the infill path asks the
engine what it supports instead of probing objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from diffucode.denoiser import Denoiser
from diffucode.errors import ConfigError


class TextTokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids) -> str: ...


@dataclass
class Engine:
    denoiser: Denoiser
    tokenizer: TextTokenizer
    name: str
    path: Path | None = None
    meta: dict = field(default_factory=dict)
    load_seconds: float = 0.0
    runtime: dict = field(default_factory=dict)  # load-time choices: {"quantize": ..., "int8_speedup": ...}
    # Declared capability: the family's own `complete` (a model that only continues a prefix, DiffusionGemma),
    # called by infill.complete instead of filling a hole; None: fill the hole at the cursor.
    complete: Callable[..., Any] | None = None
    # Declared capability: the jobs ("infill", "rewrite", "instruct") this model cannot do, each with the one-line
    # reason the user sees (a block-causal model never sees a suffix); empty: it does every job.
    refuses: dict[str, str] = field(default_factory=dict)

    def require(self, job: str) -> None:
        """ConfigError with the family's reason when this model cannot do `job`."""
        if job in self.refuses:
            raise ConfigError(f"{self.name}: {self.refuses[job]}")

    @property
    def pad_tail(self) -> bool:
        """True when the model was trained to fill the unused tail of a hole with <|pad|> (masking.py)."""
        return bool(self.meta.get("infill", {}).get("pad_tail")) and self.denoiser.pad_id is not None

"""The generation settings every front end shares (`InfillSettings`), their one-line help and their checks.

No torch here: the command line builds its flags from these fields, and `--help` or a bad value must
answer before the model's libraries load. The sampler and the guidance read their constants and
checks from here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from diffucode.errors import ConfigError

STRATEGIES = ("confidence", "margin", "entropy", "origin")


def check_position_temperature(position_temperature: float | None) -> None:
    if position_temperature is not None and not (math.isfinite(position_temperature) and position_temperature >= 0):
        raise ConfigError("position_temperature must be a finite number ≥ 0")


def check_cfg_scale(cfg_scale: float) -> None:
    if not (math.isfinite(cfg_scale) and cfg_scale >= 0):
        raise ConfigError("cfg_scale must be a finite number ≥ 0")


LENGTH_MODES = ("auto", "pad", "search", "fixed", "expand")
MAX_CANDIDATES = 64  # one batch in memory: rows × context × vocabulary logits


@dataclass(frozen=True)
class InfillSettings:
    """Generation knobs shared by infill, rewrite and complete (the CLI has one flag per field)."""

    steps: int | None = None  # forwards per hole set; None: one per 2 masked tokens
    strategy: str = "confidence"  # unmasking order: confidence, margin, entropy, origin
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    threshold: float | None = 0.9  # parallel decoding: also commit every token with confidence ≥ threshold
    entropy_bound: float | None = None  # also commit lowest-entropy tokens while Σ entropy − max ≤ this
    early_stop: float | None = None  # commit all when predictions repeat and each is this confident
    block_length: int | None = None  # semi-autoregressive blocks of this many masks
    remask_below: float | None = None  # re-predict committed tokens whose confidence was below this
    position_temperature: float | None = None  # Dream's alg_temp: draw the positions to commit from softmax(score / this)
    cfg_scale: float = 0.0  # LLaDA's classifier-free guidance against the context masked (0: off)
    candidates: int = 1  # drawn in one batch; the best valid one wins
    seed: int = 0
    max_new_tokens: int = 64  # largest hole, in tokens, per span
    length_mode: str = "auto"  # auto: expand or pad if the model was trained for it, else search
    length: int | None = None  # fixed hole length in tokens (length_mode "fixed")
    search_lengths: tuple[int, ...] | None = None  # hole lengths tried by the search
    validate: bool = True  # reject candidates that break the syntax (syntax.py)
    language: str | None = "python"
    context_tokens: int | None = None  # prompt budget; default: the model's context
    cache_refresh: int | None = 4  # approximate K/V cache: full forward every N steps (1 = exact; None = off)
    exact: bool = False  # ignore threshold, entropy_bound, early_stop and cache_refresh: the reference decoder
    max_lines: int | None = None  # infill keeps at most this many lines of each hole's text (line-bounded)
    allow_delete: bool = False  # accept results that delete the span's code (guard.py); else they are refused

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}")
        if self.length_mode not in LENGTH_MODES:
            raise ConfigError(f"unknown length mode {self.length_mode!r}; choose from {', '.join(LENGTH_MODES)}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError("steps must be ≥ 1")
        if not 1 <= self.candidates <= MAX_CANDIDATES:
            raise ConfigError(f"candidates must be between 1 and {MAX_CANDIDATES} (they are decoded as one batch)")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens must be ≥ 1")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError("temperature must be a finite number ≥ 0")
        if self.cache_refresh is not None and self.cache_refresh < 1:
            raise ConfigError("cache_refresh must be ≥ 1")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ConfigError("threshold must be in (0, 1]")
        if self.entropy_bound is not None and not self.entropy_bound >= 0:  # NaN too
            raise ConfigError("entropy_bound must be ≥ 0")
        if self.early_stop is not None and not 0.0 < self.early_stop <= 1.0:
            raise ConfigError("early_stop must be in (0, 1]")
        if self.length_mode == "fixed" and not self.length:
            raise ConfigError("length_mode 'fixed' needs length ≥ 1")
        if self.max_lines is not None and self.max_lines < 1:
            raise ConfigError("max_lines must be ≥ 1")
        if self.length is not None and self.length < 1:
            raise ConfigError("length must be ≥ 1")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError("top_k must be ≥ 1")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ConfigError("top_p must be in (0, 1]")
        if self.block_length is not None and self.block_length < 1:
            raise ConfigError("block_length must be ≥ 1")
        if self.remask_below is not None and not 0.0 < self.remask_below <= 1.0:
            raise ConfigError("remask_below must be in (0, 1]")
        check_position_temperature(self.position_temperature)
        check_cfg_scale(self.cfg_scale)
        if self.context_tokens is not None and self.context_tokens < 1:
            raise ConfigError("context_tokens must be ≥ 1")
        if not 0 <= self.seed < 2**63:
            raise ConfigError("seed must be in [0, 2^63)")
        if self.search_lengths is not None and (not self.search_lengths or min(self.search_lengths) < 1):
            raise ConfigError("search_lengths must be one or more lengths ≥ 1")


# One line of help per setting: the CLI builds its flags from these, the LSP documents its options with them.
SETTINGS_HELP = {
    "steps": "denoising forward passes (default: one per 2 masked tokens)",
    "strategy": "which masks to commit first: " + ", ".join(STRATEGIES),
    "temperature": "0 picks the most likely token; higher samples more freely",
    "top_k": "sample only among the k most likely tokens",
    "top_p": "sample only from the smallest set of tokens with this much probability",
    "threshold": "parallel decoding: also commit every token at least this confident",
    "entropy_bound": "parallel decoding: also commit the surest tokens while their summed entropy, less the largest, stays within this (nats)",
    "early_stop": "commit every remaining token once the predictions repeat the previous step's and each is at least this confident",
    "block_length": "fill the hole left to right in blocks of this many tokens",
    "remask_below": "re-predict committed tokens whose confidence was below this",
    "position_temperature": "draw which tokens to commit at random, the surer the likelier: softmax(score / this) "
                            "(Dream's alg_temp; unset or 0: the surest first)",
    "cfg_scale": "classifier-free guidance: also run the model with the context masked and move away from that "
                 "prediction by this much (LLaDA's cfg_scale; 0: off; twice the rows per forward)",
    "candidates": "candidates drawn in one batch; the best valid one wins",
    "seed": "random seed (same seed, same output)",
    "max_new_tokens": "largest hole per span, in tokens",
    "length_mode": "how the hole length is chosen: " + ", ".join(LENGTH_MODES),
    "length": "exact hole length in tokens (implies length mode fixed)",
    "search_lengths": "hole lengths the length search tries, comma-separated",
    "validate": "reject candidates that break the syntax",
    "language": "language for syntax checks (default: from the file extension)",
    "context_tokens": "tokens of surrounding code the model sees (default: its context)",
    "cache_refresh": "reuse the context's keys/values, recomputing everything every N steps (faster, approximate)",
    "exact": "the reference decoder: no threshold, entropy bound, early stop or cache (slower)",
    "max_lines": "infill keeps at most this many lines of each hole's text, cut after its newline "
                 "(line-bounded decoding: 1 for a single-line hole)",
    "allow_delete": "accept a result that deletes code: an empty fill of lines that held code, a rewrite that "
                    "drops or merges lines (refused otherwise)",
}


def flag_type(name: str):
    """The Python type of a setting's command-line value (int, float, str or bool), from its field."""
    f = next(f for f in fields(InfillSettings) if f.name == name)
    t = str(f.type)
    return bool if t == "bool" else next((k for n, k in (("int", int), ("float", float)) if t.startswith(n)), str)


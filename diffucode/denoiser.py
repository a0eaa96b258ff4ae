"""The Denoiser protocol: all the sampler knows about a model.

A denoiser maps token ids with some positions set to `mask_id` to logits over the vocabulary.
Model families (diffucode's own transformer, Dream/DiffuCoder, LLaDA) implement it with a thin
adapter, so sampling, infill and validation never depend on which family runs underneath.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from diffucode.model import DiffusionTransformer
from diffucode.tokenizer import Tokenizer


@runtime_checkable
class Denoiser(Protocol):
    mask_id: int
    pad_id: int | None  # tail filler of a hole (stripped from output), if the model was trained with it
    eos_id: int | None
    vocab_size: int  # ids >= vocab_size are never sampled (some checkpoints' logits are wider than the vocab)
    forbidden_ids: frozenset[int]  # never sampled as content: mask, bos, expand, ...
    max_seq_len: int
    device: torch.device

    def logits(self, ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, V) logits, or (B, P, V) at `positions` (B, P)."""
        ...


class NativeDenoiser:
    """diffucode's own DiffusionTransformer behind the Denoiser protocol."""

    def __init__(self, model: DiffusionTransformer, tokenizer: Tokenizer):
        self.model = model
        self.mask_id = tokenizer.mask_id
        self.pad_id = tokenizer.pad_id
        self.eos_id = tokenizer.eos_id
        self.vocab_size = tokenizer.vocab_size
        self.forbidden_ids = frozenset(i for i in (tokenizer.mask_id, tokenizer.bos_id, tokenizer.expand_id) if i is not None)
        self.max_seq_len = model.cfg.max_seq_len

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(ids, positions=positions)


class CachedDenoiser:
    """Approximate K/V caching over one denoising job (Fast-dLLM's idea, for full-attention models).

    The first call, and every `refresh_every`-th after it, is a full forward that fills the cache.
    Calls in between recompute only the positions being generated (`positions`): the context's keys
    and values come from the cache, stale only in how the context attended to the hole at the last
    refresh. The context never changes during a job, so its own tokens are exact as of that refresh.
    `refresh_every=1` is exactly the uncached model. Create one per job: it holds that job's cache.
    """

    def __init__(self, base: NativeDenoiser, *, refresh_every: int = 4):
        if refresh_every < 1:
            raise ValueError("refresh_every must be ≥ 1")
        self.base = base
        self.model = base.model
        self.refresh_every = refresh_every
        for name in ("mask_id", "pad_id", "eos_id", "vocab_size", "forbidden_ids", "max_seq_len"):
            setattr(self, name, getattr(base, name))
        self._cache = None
        self._shape = None
        self._calls = 0
        self.full_forwards = 0

    @property
    def device(self) -> torch.device:
        return self.base.device

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is None:
            return self.base.logits(ids)
        if positions.dim() == 1:
            positions = positions.expand(ids.size(0), -1)
        refresh = self._cache is None or self._shape != tuple(ids.shape) or self._calls % self.refresh_every == 0
        self._calls += 1
        if refresh:
            self._shape = tuple(ids.shape)
            self._cache = self.model.new_cache(*ids.shape)
            self.full_forwards += 1
            return self.model.forward_cached(ids, self._cache, positions=positions)
        return self.model.forward_cached(ids, self._cache, active=positions)

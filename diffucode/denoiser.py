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

"""A transformers decoder (Qwen2/Qwen3 classes) run block-causally, for the block-diffusion families.

`BlockHFModel` implements diffucode.blocks.BlockModel over transformers' own model class with its
causal flag off (hf.make_bidirectional): the prompt's complete blocks are prefilled in one forward
under an explicit staircase mask; a block then attends to the cached blocks and to itself in full,
which is the staircase again, so the cache is exact. It also stands in for the Denoiser protocol's
fields, with `continuation` (diffucode/continuation.py) as its way to generate; `logits` refuses,
since a block model never sees a suffix.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffucode import blocks
from diffucode.continuation import PrefixOnly
from diffucode.errors import ConfigError
from diffucode.families import hf


class BlockHFModel(PrefixOnly):
    def __init__(self, model, *, block_length: int, align: str, schedule: str, max_seq_len: int, **fields):
        # What a prompt plus its continuation may take: blocks counted from 0 end on a block boundary, so
        # up to block_length - 1 positions past the continuation are decoded too.
        super().__init__(model, max_seq_len=max_seq_len - (int(block_length) - 1 if align == "start" else 0),
                         **fields)
        self.block_length = int(block_length)
        self.align = align  # blocks.ALIGNS: where the family's blocks fall
        self.schedule = schedule  # blocks.SCHEDULES: the family's own commit counts, used unless settings say
        self._limit = max_seq_len  # the positions the model may use

    # -- blocks.BlockModel --------------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, pad: int = 0):
        cache = hf.transformers().DynamicCache()
        n = ids.size(1)
        if n:
            blk = (torch.arange(n, device=ids.device) + pad) // self.block_length
            staircase = (blk[:, None] >= blk[None, :])[None, None]  # (1, 1, n, n) bool: may attend
            self.model.model(input_ids=ids, attention_mask=staircase, use_cache=True,
                             **hf.with_cache(self.model.model, cache))
        return cache

    @torch.inference_mode()
    def block_logits(self, block: torch.Tensor, cache, start: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        kept = cache.get_seq_length()
        try:
            hidden = self._forward(block, cache, start)
        finally:
            added = cache.get_seq_length() - kept
            if added:
                cache.crop(-added)  # the block's rows are not part of the context until it is finished
        return self.model.lm_head(hidden if rows is None else hidden[:, rows])

    @torch.inference_mode()
    def append(self, block: torch.Tensor, cache, start: int) -> None:
        self._forward(block, cache, start)

    def _forward(self, block: torch.Tensor, cache, start: int) -> torch.Tensor:
        if start + block.size(1) > self._limit:
            raise ConfigError(f"{start + block.size(1)} tokens exceed the model's {self._limit}-token context")
        pos = torch.arange(start, start + block.size(1), device=block.device)[None]
        return self.model.model(input_ids=block, position_ids=pos, use_cache=True,
                                **hf.with_cache(self.model.model, cache)).last_hidden_state

    # -- continuation.complete_by_continuation ------------------------------------------------------------
    def continuation(self, prompt_ids: list[int], *, max_new_tokens: int, settings, seed: int = 0,
                     on_draft: Callable[[int, list[int]], None] | None = None) -> list[int]:
        """The ids generated after `prompt_ids` with the settings' steps, threshold and sampling
        (blocks.sample_blocks), cut before the first end of text."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        steps = blocks.steps_per_block(settings.steps or max(1, max_new_tokens // 2), max_new_tokens,
                                       self.block_length, self.align)  # default: one forward per 2 tokens
        schedule = settings.schedule or self.schedule
        if schedule not in blocks.SCHEDULES:
            raise ConfigError(f"a block model decodes with schedule {' or '.join(blocks.SCHEDULES)}, not {schedule}")
        threshold = None if settings.exact else settings.threshold
        ids = blocks.sample_blocks(self, prompt_ids, max_new_tokens=max_new_tokens, steps=steps, schedule=schedule,
                                   threshold=threshold, temperature=settings.temperature,
                                   top_k=settings.top_k, top_p=settings.top_p, stop_ids=self.eos_ids,
                                   generator=gen, on_draft=on_draft)
        return blocks.until_stop(ids, self.eos_ids, self.mask_id, max_new_tokens)

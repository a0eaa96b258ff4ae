"""Block diffusion decoding (BD3LM, SDAR): autoregressive across blocks, masked diffusion inside one.

Attention is block-causal ("staircase"): a token sees every token of its own block and of the blocks
before it, nothing after. So a finished block's keys and values never change again, and caching them
is exact. Where the blocks fall is the family's convention (`BlockModel.align`):

    "start"       blocks counted from position 0 (SDAR): the prompt's complete blocks are prefilled, and
                  the first block decoded is the prompt's unfinished tail followed by masks; the last
                  block is whole, so up to block_length − 1 tokens past `max_new_tokens` are decoded;
    "prompt_end"  the prompt is left-padded (virtually) to a whole number of blocks, so generation starts
                  on a block boundary (dLLM's BD3LM); the last block holds only what `max_new_tokens` leaves.

Then, block by block: each step runs the block alone against the cache and commits some of its masks;
when none is left, one more forward stores the block's K/V in the cache; decoding stops after the block
that holds a stop id (end of text), or when `max_new_tokens` are reached.

How many masks a step commits (`schedule`): "even" splits the block's length evenly over `steps`, the
earlier steps taking the remainder (SDAR's get_num_transfer_tokens; a block that starts with prompt
tokens finishes early); "rounded" is dLLM's share of the masks left (sampler.rounded_share), skipping
steps that would commit none. The masks committed are the ones the model is surest of; with
`threshold`, every mask whose confidence exceeds it when that is at least as many (SDAR's "dynamic"
low-confidence remasking). Confidence is the probability of the chosen token under softmax(logits).

A block model cannot see text after the block it writes, so it can complete a prefix but not fill a
hole before a suffix: its engine declares `complete` through diffucode/continuation.py and refuses
infill and rewrite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from diffucode.errors import ConfigError
from diffucode.sampler import NEG_INF, banned_ids, choose_tokens, pick_positions, rounded_share, suppress_

ALIGNS = ("start", "prompt_end")
SCHEDULES = ("even", "rounded")


class BlockModel(Protocol):
    """What block decoding needs from a model (families/hf.py BlockHFModel implements it)."""

    mask_id: int
    vocab_size: int
    forbidden_ids: frozenset[int]
    device: torch.device
    block_length: int  # the block size the model was trained with
    align: str  # where blocks fall: one of ALIGNS (see the module docstring)

    def prefill(self, ids: torch.Tensor, pad: int = 0) -> Any:
        """A cache holding the keys and values of `ids` (1, n), block-causal, as if `pad` tokens nobody sees
        came first (token i is in block (i + pad) // block_length); positions count from 0 at ids[0]."""
        ...

    def block_logits(self, block: torch.Tensor, cache: Any, start: int,
                     rows: torch.Tensor | None = None) -> torch.Tensor:
        """(1, R, V) logits of `block` (1, L) at positions start.. start+L-1 (only its `rows`, when given),
        attending to the cache and to the whole block; the cache is left as it was."""
        ...

    def append(self, block: torch.Tensor, cache: Any, start: int) -> None:
        """Add the finished `block`'s keys and values to the cache."""
        ...


Draft = Callable[[int, list[int]], None]  # (forwards so far, generated ids so far with masks) -> None


def transfer_counts(n: int, steps: int) -> list[int]:
    """How many masks each of `steps` steps commits in a block of `n` tokens: n // steps each, the
    first n % steps steps one more (SDAR's get_num_transfer_tokens, as LLaDA's)."""
    steps = max(1, min(steps, n))
    base, extra = divmod(n, steps)
    return [base + (1 if i < extra else 0) for i in range(steps)]


def rounded_counts(n: int, steps: int) -> list[int]:
    """schedule "rounded" for a block with `n` masks: sampler.rounded_share step by step, zeros dropped."""
    counts, left = [], n
    for k in range(steps, 0, -1):
        c = rounded_share(left, k, steps)
        left -= c
        if c:
            counts.append(c)
        if not left:
            break
    return counts


def steps_per_block(steps: int, max_new_tokens: int, block_length: int, align: str = "start") -> int:
    """The forwards one block gets when a job has `steps` forwards for `max_new_tokens` tokens, at least
    one and at most one per token of the block: "prompt_end" splits the steps over the blocks the job
    needs (dLLM's BD3LM: ceil(steps / ceil(max_new_tokens / block_length))); "start" keeps the job's
    tokens-per-forward ratio (SDAR counts its steps per block)."""
    block = max(1, min(block_length, max_new_tokens))  # a job shorter than a block decodes part of one
    if align == "prompt_end":
        per = math.ceil(steps / math.ceil(max(1, max_new_tokens) / block_length))
    else:
        per = math.ceil(block * steps / max(1, max_new_tokens))
    return max(1, min(block, per))


def sample_blocks(model: BlockModel, prompt: Sequence[int], *, max_new_tokens: int, steps: int,
                  schedule: str = "even", threshold: float | None = None, temperature: float = 0.0,
                  top_k: int | None = None, top_p: float | None = None, stop_ids: Sequence[int] = (),
                  allow_ids: Sequence[int] = (), generator: torch.Generator | None = None,
                  on_draft: Draft | None = None) -> list[int]:
    """The ids decoded after `prompt`: at least `max_new_tokens` unless a stop id ended decoding (the
    blocks after it are left as masks); `until_stop` cuts them to the text.

    Args:
        model: a block-causal model (BlockModel).
        prompt: the prompt's token ids (special tokens included).
        max_new_tokens: how many tokens to generate at most.
        steps: forwards per block (at least 1; at most the block's masks are used).
        schedule: how many masks a step commits, one of SCHEDULES (module docstring).
        threshold: None: commit exactly the schedule's count per step; else every mask whose confidence
            is above it when they are at least that many.
        temperature, top_k, top_p: 0 takes the argmax; > 0 samples (see sampler.choose_tokens).
        stop_ids: ids that end the text (end of text, end of turn): decoding stops after their block.
        allow_ids: forbidden ids this call may produce (e.g. the stop ids, when they are special tokens).
        generator: torch.Generator for sampling.
        on_draft: called after every forward with (forwards, generated ids so far); raise to cancel.
    """
    _check(model, steps=steps, schedule=schedule, threshold=threshold)
    L, P, dev = model.block_length, len(prompt), model.device
    pad = (-P) % L if model.align == "prompt_end" else 0
    done = P if model.align == "prompt_end" else (P // L) * L  # what goes into the cache first
    end = P + max_new_tokens if model.align == "prompt_end" else P + max_new_tokens + (-(P + max_new_tokens)) % L
    seq = torch.tensor([list(prompt) + [model.mask_id] * (end - P)], dtype=torch.long, device=dev)
    cache = model.prefill(seq[:, :done], pad)
    banned = banned_ids(model, [*allow_ids, *stop_ids])
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=dev)
    forwards = 0
    for start in range(done, end, L):
        block = seq[:, start:min(start + L, end)]
        n = int((block == model.mask_id).sum())
        counts = transfer_counts(block.size(1), steps) if schedule == "even" else rounded_counts(n, steps)
        for k in counts:
            rows = (block[0] == model.mask_id).nonzero()[:, 0]  # logits only where a mask is left
            logits = model.block_logits(block, cache, start, rows).to(torch.float32, copy=True)  # (1, M, V)
            forwards += 1
            suppress_(logits, banned, model.vocab_size)
            x0, conf = choose_tokens(logits, "confidence", temperature, top_k, top_p, generator, entropy=False)[:2]
            full = torch.full(block.shape, NEG_INF, device=dev).index_copy(1, rows, conf)
            commit = _choose(full, k, threshold)
            block[commit] = block.index_copy(1, rows, x0)[commit]
            if on_draft is not None:
                on_draft(forwards, seq[0, P:start + L].tolist())
            if not (block == model.mask_id).any():
                break
        model.append(block, cache, start)
        if stops.numel() and torch.isin(seq[0, P:start + L], stops).any():
            break
    return seq[0, P:].tolist()


def until_stop(ids: Sequence[int], stop_ids: Sequence[int], mask_id: int, limit: int | None = None) -> list[int]:
    """Decoded ids as text ids: up to the first stop id (or a mask left after a stop), at most `limit`."""
    stops = set(stop_ids)
    out = []
    for t in list(ids)[:limit]:
        if t in stops or t == mask_id:
            break
        out.append(int(t))
    return out


def _check(model: BlockModel, *, steps: int, schedule: str, threshold: float | None) -> None:
    if steps < 1:
        raise ConfigError("steps must be ≥ 1")
    if schedule not in SCHEDULES:
        raise ConfigError(f"block models decode with schedule {' or '.join(SCHEDULES)}, not {schedule!r}")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ConfigError("threshold must be in (0, 1]")
    if model.align not in ALIGNS:
        raise ConfigError(f"unknown block alignment {model.align!r}")


def _choose(conf: torch.Tensor, k: int, threshold: float | None) -> torch.Tensor:
    """(1, L) bool: the k most confident masks, or every mask above `threshold` when they are ≥ k."""
    if threshold is not None:
        high = conf > threshold
        if int(high.sum()) >= k:
            return high
    return pick_positions(conf, torch.tensor([k], device=conf.device), temperature=None, generator=None)

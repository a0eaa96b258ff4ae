"""Variable-length infill by expansion and deletion (DreamOn's decoding rule), for one hole.

A hole starts with a few masks. Each step runs one forward over `prefix + hole + suffix`, predicts
every still-masked position, and commits the most confident ones:

* an ordinary token fills its position;
* `expand_id` (DreamOn's `<|expand|>`) turns its position into two masks — the hole grows;
* `delete_id` (DreamOn's end-of-text inside the middle) removes its position — the hole shrinks.

So the length is decided by the model while it writes, instead of being guessed up front (the
prototype's fixed-length holes failed on exactly that). The hole never grows past `max_length`: at
the limit the expand logit is suppressed. Only models trained with these tokens benefit; the
sequence changes shape between steps, so this works on one row at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffucode.denoiser import Denoiser
from diffucode.errors import ConfigError
from diffucode.guidance import guided_logits
from diffucode.sampler import NEG_INF, banned_ids, choose_tokens, gumbel_keys, suppress_
from diffucode.settings import STRATEGIES, check_cfg_scale, check_position_temperature

ExpandCallback = Callable[[int, list[int]], None]  # (forwards so far, hole ids with masks)


@dataclass(frozen=True)
class ExpandOutput:
    ids: list[int]  # the finished hole (no masks, no expand/delete ids)
    logprobs: list[float]  # log-prob of each id when it was committed
    forwards: int
    expansions: int
    deletions: int


def sample_expanding(
    denoiser: Denoiser,
    prefix: list[int],
    suffix: list[int],
    *,
    expand_id: int,
    delete_id: int,
    initial: int = 4,
    max_length: int = 64,
    strategy: str = "entropy",
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    threshold: float | None = None,
    position_temperature: float | None = None,
    cfg_scale: float = 0.0,
    max_forwards: int | None = None,
    generator: torch.Generator | None = None,
    callback: ExpandCallback | None = None,
) -> ExpandOutput:
    """Fill one hole between `prefix` and `suffix`, letting the model grow and shrink it.

    Args:
        denoiser: the model; `logits`, `mask_id`, `vocab_size`, `forbidden_ids`, `device` are used.
        prefix, suffix: context token ids around the hole.
        expand_id, delete_id: the ids that grow (one mask → two) and shrink (drop the position) the hole.
        initial: masks the hole starts with (DreamOn starts from 4–64).
        max_length: the hole never holds more positions than this.
        strategy, temperature, top_k, top_p: as in sampler.sample.
        threshold: commit every mask at least this confident (≥ 1 per step); None commits one per step.
        position_temperature: the one position a step commits (when nothing reaches `threshold`) is
            drawn from softmax(score / position_temperature) instead of being the best (Dream's `alg_temp`).
        cfg_scale: classifier-free guidance (guidance.py); the unconditional input masks `prefix` and `suffix`.
        max_forwards: stop after this many forwards (default 4 × max_length) and fill what is left
            in one last commit, so a model that keeps expanding and deleting cannot loop forever.
        callback: called after every step with (forwards, hole); raise to cancel.
    """
    _check_settings(strategy=strategy, initial=initial, max_length=max_length, threshold=threshold,
                    position_temperature=position_temperature, cfg_scale=cfg_scale)
    plan = _Plan(prefix, suffix, expand_id, delete_id, max_length, banned_ids(denoiser, allow=(expand_id, delete_id)),
                 denoiser.device, strategy, temperature, top_k, top_p, threshold, position_temperature, cfg_scale,
                 generator)
    mask = denoiser.mask_id
    cap = max_forwards or 4 * max_length
    hole = _Hole([mask] * initial, [0.0] * initial)
    forwards = 0
    while mask in hole.ids:  # the decode loop
        forwards += 1
        _decode_one_step(denoiser, plan, hole, last=forwards >= cap)
        if callback is not None:
            callback(forwards, list(hole.ids))
    return ExpandOutput(hole.ids, hole.logprobs, forwards, hole.expansions, hole.deletions)


def _check_settings(*, strategy: str, initial: int, max_length: int, threshold: float | None,
                    position_temperature: float | None, cfg_scale: float) -> None:
    """Raise ConfigError for a setting outside its range (see `sample_expanding`'s Args)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if not 1 <= initial <= max_length:
        raise ConfigError(f"the hole must start with 1..{max_length} masks, not {initial}")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ConfigError("threshold must be in (0, 1]")
    check_position_temperature(position_temperature)
    check_cfg_scale(cfg_scale)


@dataclass(frozen=True)
class _Plan:
    """What stays fixed for the whole call (see `sample_expanding`'s Args)."""

    prefix: list[int]
    suffix: list[int]
    expand_id: int
    delete_id: int
    max_length: int
    banned: torch.Tensor  # (n,) the forbidden ids, less expand_id and delete_id
    device: torch.device
    strategy: str
    temperature: float
    top_k: int | None
    top_p: float | None
    threshold: float | None
    position_temperature: float | None
    cfg_scale: float
    generator: torch.Generator | None


@dataclass
class _Hole:
    """The hole as it grows and shrinks: its ids (masks included) and their commit-time log-probs."""

    ids: list[int]
    logprobs: list[float]
    expansions: int = 0
    deletions: int = 0


def _decode_one_step(denoiser: Denoiser, plan: _Plan, hole: _Hole, *, last: bool) -> None:
    """One forward over `prefix + hole + suffix`, then commit the chosen masks. On the `last` step
    every mask is committed, and expand and delete are not allowed."""
    open_ = [i for i, t in enumerate(hole.ids) if t == denoiser.mask_id]
    x0, conf, score, logp = _predict(denoiser, plan, hole, open_, last=last)  # each (M,)
    if last:
        commit = list(range(len(open_)))
    elif plan.threshold is not None:
        commit = [j for j in range(len(open_)) if float(conf[j]) >= plan.threshold] or [
            _pick_one(score, plan.position_temperature, plan.generator)]
    else:
        commit = [_pick_one(score, plan.position_temperature, plan.generator)]
    _apply(hole, open_, commit, x0, logp, plan, denoiser.mask_id)


def _predict(denoiser: Denoiser, plan: _Plan, hole: _Hole, open_: list[int], *, last: bool):
    """Token, confidence, ordering score and log-prob at each open position of the hole. (M,) each."""
    device = plan.device
    ids = torch.tensor(plan.prefix + hole.ids + plan.suffix, device=device)[None]
    pos = torch.tensor([len(plan.prefix) + i for i in open_], device=device)[None]
    prompt = _context(len(plan.prefix), len(hole.ids), len(plan.suffix), device) if plan.cfg_scale else None
    logits = guided_logits(denoiser, ids, pos, prompt=prompt, cfg_scale=plan.cfg_scale)
    logits = logits.to(torch.float32, copy=True)  # (1, M, V), edited below
    suppress_(logits, plan.banned, denoiser.vocab_size)
    if len(hole.ids) >= plan.max_length or last:
        logits[..., plan.expand_id] = NEG_INF
    if last:
        logits[..., plan.delete_id] = NEG_INF
    x0, conf, score, logp, _ = choose_tokens(logits, plan.strategy, plan.temperature, plan.top_k, plan.top_p,
                                             plan.generator, entropy=False)
    return x0[0], conf[0], score[0], logp[0]


def _apply(hole: _Hole, open_: list[int], commit: list[int], x0: torch.Tensor, logp: torch.Tensor, plan: _Plan,
           mask: int) -> None:
    """Commit the chosen open positions: a token fills, expand_id grows the hole, delete_id shrinks it."""
    # Right to left, so earlier indices stay valid while the hole changes length.
    for j in sorted(commit, key=lambda j: open_[j], reverse=True):
        i, tok = open_[j], int(x0[j])
        if tok == plan.expand_id and len(hole.ids) < plan.max_length:
            hole.ids[i : i + 1], hole.logprobs[i : i + 1] = [mask, mask], [0.0, 0.0]
            hole.expansions += 1
        elif tok == plan.delete_id:
            del hole.ids[i], hole.logprobs[i]
            hole.deletions += 1
        elif tok != plan.expand_id:
            hole.ids[i], hole.logprobs[i] = tok, float(logp[j])
        # an expand past the limit (several in one step) leaves its mask for the next step


def _pick_one(score: torch.Tensor, temperature: float | None, generator: torch.Generator | None) -> int:
    """The open position a step commits: the best `score`, or one drawn from softmax(score / temperature)."""
    if not temperature:
        return int(score.argmax())
    return int(gumbel_keys(score[None], temperature, generator)[0].argmax())  # Gumbel-max: one softmax draw


def _context(n_prefix: int, n_hole: int, n_suffix: int, device: torch.device) -> torch.Tensor:
    """(1, T) bool: the prefix and suffix positions (what guidance masks), not the hole's."""
    hole = torch.zeros(n_prefix + n_hole + n_suffix, dtype=torch.bool, device=device)
    hole[n_prefix : n_prefix + n_hole] = True
    return ~hole[None]

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
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if not 1 <= initial <= max_length:
        raise ConfigError(f"the hole must start with 1..{max_length} masks, not {initial}")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ConfigError("threshold must be in (0, 1]")
    check_position_temperature(position_temperature)
    check_cfg_scale(cfg_scale)
    mask = denoiser.mask_id
    cap = max_forwards or 4 * max_length
    hole, lps = [mask] * initial, [0.0] * initial
    forwards = expansions = deletions = 0
    device = denoiser.device
    banned = banned_ids(denoiser, allow=(expand_id, delete_id))
    while mask in hole:
        open_ = [i for i, t in enumerate(hole) if t == mask]
        ids = torch.tensor(prefix + hole + suffix, device=device)[None]
        pos = torch.tensor([len(prefix) + i for i in open_], device=device)[None]
        prompt = _context(len(prefix), len(hole), len(suffix), device) if cfg_scale else None
        logits = guided_logits(denoiser, ids, pos, prompt=prompt, cfg_scale=cfg_scale).to(torch.float32, copy=True)  # (1, M, V), edited below
        forwards += 1
        last = forwards >= cap
        suppress_(logits, banned, denoiser.vocab_size)
        if len(hole) >= max_length or last:
            logits[..., expand_id] = NEG_INF
        if last:
            logits[..., delete_id] = NEG_INF
        x0, conf, score, logp, _ = choose_tokens(logits, strategy, temperature, top_k, top_p, generator, entropy=False)
        x0, conf, score, logp = x0[0], conf[0], score[0], logp[0]
        if last:
            commit = list(range(len(open_)))
        elif threshold is not None:
            commit = [j for j in range(len(open_)) if float(conf[j]) >= threshold] or [
                _pick_one(score, position_temperature, generator)]
        else:
            commit = [_pick_one(score, position_temperature, generator)]
        # Right to left, so earlier indices stay valid while the hole changes length.
        for j in sorted(commit, key=lambda j: open_[j], reverse=True):
            i, tok = open_[j], int(x0[j])
            if tok == expand_id and len(hole) < max_length:
                hole[i : i + 1], lps[i : i + 1] = [mask, mask], [0.0, 0.0]
                expansions += 1
            elif tok == delete_id:
                del hole[i], lps[i]
                deletions += 1
            elif tok != expand_id:
                hole[i], lps[i] = tok, float(logp[j])
            # an expand past the limit (several in one step) leaves its mask for the next step
        if callback is not None:
            callback(forwards, list(hole))
    return ExpandOutput(hole, lps, forwards, expansions, deletions)


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

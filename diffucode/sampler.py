"""The reverse process: fill every mask of `ids` by repeated denoising. Pure functions over tensors.

One step = one forward pass of the denoiser over the whole sequence, logits only at the positions
being generated, then commit some of the still-masked positions:

* how many: `schedule` "even" gives each of the `steps` forwards (per block) the same share of the
  masks, the earlier steps the remainder (LLaDA's get_num_transfer_tokens); "linear" commits the
  share 1 − s/t of the masks still open, floored, on the time grid linspace(1, 1e-3, steps + 1),
  and all of them at the last step (Dream's diffusion_generate; a step may commit none); "remask"
  re-predicts every generated position each step and masks again the least confident
  ⌊N·(1 − (i+1)/steps)⌋ of them, tokens committed earlier included (Open-dLLM's "p2"; the threshold,
  entropy, early-stop, block and tail rules do not apply to it); "rounded" commits the share 1/k of
  the masks left, k the steps left, rounded half to even, and skips the steps that would commit none
  (dLLM's MDLM and BD3LM samplers); on top of even, linear and rounded, every position
  whose confidence reaches `threshold` (Fast-dLLM's parallel decoding), or the lowest-entropy
  positions while their summed entropy, less the largest, stays within `entropy_bound`
  (DiffusionGemma's entropy-bounded sampler). The schedule is a floor, so `steps` bounds the
  forwards whatever the model's confidence; `steps` = number of masks gives the pure
  threshold/entropy rule (at least one per step);
* when: `early_stop` commits every open mask at once when the predictions at all of them are the
  same as in the previous forward and each is at least that confident;
* which: the highest-scoring ones under `strategy` — `confidence` (max prob, "low-confidence
  remasking" in LLaDA / `maskgit_plus` in Dream), `margin` (top1 − top2), `entropy` (lowest entropy
  first), or `origin` (random order); with `position_temperature` (Dream's `alg_temp`) the schedule's
  positions are drawn at random, without replacement, from softmax(score / position_temperature);
* with what logits: `cfg_scale` > 0 is LLaDA's classifier-free guidance (diffucode/guidance.py): a
  second input with the prompt masked, and un + (cfg_scale + 1)·(cond − un);
* where: optionally in semi-autoregressive blocks of `block_length` masked positions, left to right;
* tails: ids in `tail_ids` (pad, eos) may only form a contiguous tail of each hole, so a committed pad
  pads the rest of its hole and a pad is never placed before committed content (the prototype's
  confidence decoding put pads inside text in 53–75 % of holes without this rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from diffucode.denoiser import Denoiser
from diffucode.errors import ConfigError
from diffucode.guidance import guided_logits
from diffucode.settings import (SCHEDULES, STRATEGIES, check_cfg_scale,  # noqa: F401 (STRATEGIES re-exported)
                                check_position_temperature)

NEG_INF = float("-inf")


@dataclass(frozen=True)
class SampleOutput:
    ids: torch.Tensor  # (B, T) every mask filled
    logprobs: torch.Tensor  # (B, T) log-prob of each generated token when it was committed; 0 elsewhere
    generated: torch.Tensor  # (B, T) bool, the positions that were masks on input
    forwards: int  # denoiser calls made


Callback = Callable[[int, torch.Tensor, torch.Tensor], None]  # (step, ids (B, T), still_masked (B, T))


def sample(
    denoiser: Denoiser,
    ids: torch.Tensor,
    *,
    steps: int,
    strategy: str = "confidence",
    schedule: str = "even",
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    threshold: float | None = None,
    entropy_bound: float | None = None,
    early_stop: float | None = None,
    block_length: int | None = None,
    tail_ids: Sequence[int] = (),
    allow_ids: Sequence[int] = (),
    remask_below: float | None = None,
    position_temperature: float | None = None,
    cfg_scale: float = 0.0,
    cfg_prompt: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> SampleOutput:
    """Denoise `ids` until no mask is left.

    Args:
        denoiser: the model (see denoiser.py); only `logits`, `mask_id`, `vocab_size`, `forbidden_ids` are used.
        ids: (B, T) token ids; positions equal to `denoiser.mask_id` are generated, the rest is context.
        steps: forward passes for the whole job (≥ 1; capped at the number of masks): each forward
            commits at least its share of the masks, so at most `steps` forwards run.
        strategy: unmasking order, one of STRATEGIES.
        schedule: how many masks each step commits, one of SCHEDULES (see the module docstring).
        temperature: 0 takes the argmax; > 0 samples from softmax(logits / temperature).
        top_k, top_p: restrict sampling to the k most likely ids / the nucleus of mass p.
        threshold: also commit every position whose confidence is ≥ threshold.
        entropy_bound: also commit the lowest-entropy positions while Σ entropy − max entropy ≤ this (nats).
        early_stop: commit all open masks when their predictions repeat the previous forward's and each
            has confidence ≥ this.
        block_length: generate the masked positions in blocks of this many, left to right (LLaDA).
        tail_ids: ids that may only form a contiguous tail of each hole (pad, eos).
        allow_ids: forbidden ids that may be sampled in this call (e.g. a chat model's end-of-turn).
        remask_below: after each step, re-mask committed tokens whose commit-time probability was below
            this value so they are predicted again with more context; each position at most once.
        position_temperature: None or 0 commits the schedule's k highest-scoring positions; > 0 draws
            those k without replacement from softmax(score / position_temperature) over the eligible
            positions (Dream's `alg_temp`). Threshold, entropy-bound and early-stop commits are unchanged.
        cfg_scale: 0 (off) or LLaDA's classifier-free guidance scale (see diffucode/guidance.py).
        cfg_prompt: (B, T) or (T,) bool, the positions guidance masks in its unconditional input;
            default: every position that is not a mask on input (LLaDA's `prompt_index`).
        generator: torch.Generator for reproducible sampling and random ordering.
        callback: called after every step with (step, ids, still_masked); raise to cancel.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    _check_settings(strategy=strategy, steps=steps, temperature=temperature, threshold=threshold,
                    block_length=block_length, entropy_bound=entropy_bound, early_stop=early_stop,
                    position_temperature=position_temperature, cfg_scale=cfg_scale)
    ids = ids.clone()
    generated = ids == denoiser.mask_id  # (B, T)
    state = _State.start(ids, generated)
    if not state.masked.any():
        return SampleOutput(ids, state.logprobs, generated, 0)
    if schedule == "remask":
        if cfg_scale or block_length:
            raise ConfigError("schedule remask re-predicts the whole hole each step: it takes no cfg_scale or "
                              "block_length")
        return _sample_remasking(denoiser, state, generated, steps=steps, allow_ids=allow_ids, top_k=top_k,
                                 top_p=top_p, temperature=temperature, generator=generator, callback=callback)
    plan = _make_plan(denoiser, generated, steps=steps, block_length=block_length, tail_ids=tail_ids,
                      allow_ids=allow_ids, cfg_scale=cfg_scale, cfg_prompt=cfg_prompt)
    knobs = _Knobs(strategy, schedule, temperature, top_k, top_p, threshold, entropy_bound, early_stop, remask_below,
                   position_temperature, cfg_scale, generator)
    # At most `steps` forwards per block, plus one per position: a committed mask id (allowed only when a
    # call allows every id) leaves its position open, and must not loop forever.
    limit = plan.steps_per_block * plan.n_blocks + int(generated.sum(1).max())
    while state.masked.any() and state.forwards < limit:  # the decode loop
        _decode_one_step(denoiser, plan, knobs, state)
        if callback is not None:
            callback(state.forwards, state.ids, state.masked)
    return SampleOutput(state.ids, state.logprobs, generated, state.forwards)


def _check_settings(*, strategy: str, steps: int, temperature: float, threshold: float | None,
                    block_length: int | None, entropy_bound: float | None, early_stop: float | None,
                    position_temperature: float | None, cfg_scale: float) -> None:
    """Raise ConfigError for a knob outside its range (see `sample`'s Args)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if steps < 1:
        raise ConfigError("steps must be ≥ 1")
    if temperature < 0:
        raise ConfigError("temperature must be ≥ 0")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ConfigError("threshold must be in (0, 1]")
    if block_length is not None and block_length < 1:
        raise ConfigError("block_length must be ≥ 1")
    if entropy_bound is not None and entropy_bound < 0:
        raise ConfigError("entropy_bound must be ≥ 0")
    if early_stop is not None and not 0.0 < early_stop <= 1.0:
        raise ConfigError("early_stop must be in (0, 1]")
    check_position_temperature(position_temperature)
    check_cfg_scale(cfg_scale)


@dataclass(frozen=True)
class _Knobs:
    """`sample`'s settings that act at every step (see its Args)."""

    strategy: str
    schedule: str
    temperature: float
    top_k: int | None
    top_p: float | None
    threshold: float | None
    entropy_bound: float | None
    early_stop: float | None
    remask_below: float | None
    position_temperature: float | None
    cfg_scale: float
    generator: torch.Generator | None


@dataclass(frozen=True)
class _Plan:
    """What stays fixed for the whole call, set up before the first forward."""

    generated: torch.Tensor  # (B, T) bool, the positions that were masks on input
    gen_pos: torch.Tensor  # (B, G) the positions whose logits each step computes: the generated ones, in order
    gen_valid: torch.Tensor  # (B, G) bool, False where a row with fewer generated positions is padded
    block: torch.Tensor  # (B, T) block index (rank among the generated positions // block_length)
    n_blocks: int
    steps_per_block: int
    seg_start: torch.Tensor  # (B, T) first index of each position's hole (see _segments)
    seg_end: torch.Tensor  # (B, T) last index of each position's hole
    tail: torch.Tensor  # (n,) the tail ids
    banned: torch.Tensor  # (n,) the forbidden ids this call does not allow
    prompt: torch.Tensor | None  # (B, T) bool, what classifier-free guidance masks in its unconditional input


@dataclass
class _State:
    """What the decode loop changes, step by step."""

    ids: torch.Tensor  # (B, T)
    masked: torch.Tensor  # (B, T) bool, still to generate
    logprobs: torch.Tensor  # (B, T) log-prob of each token when it was committed
    remasked: torch.Tensor  # (B, T) bool, re-masked once already (remask_below)
    spent: torch.Tensor  # (B,) steps spent in the current block
    current: torch.Tensor  # (B,) the current block
    prev_x0: torch.Tensor | None = None  # (B, G) last forward's predictions, for early_stop
    forwards: int = 0  # denoiser calls made

    @classmethod
    def start(cls, ids: torch.Tensor, generated: torch.Tensor) -> _State:
        """Before the first step: every generated position masked, nothing committed."""
        B, T = ids.shape
        device = ids.device
        return cls(ids, masked=generated.clone(), logprobs=torch.zeros(B, T, dtype=torch.float32, device=device),
                   remasked=torch.zeros_like(generated), spent=torch.zeros(B, dtype=torch.long, device=device),
                   current=torch.zeros(B, dtype=torch.long, device=device))


def _generated_positions(generated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions whose logits each step computes: the generated ones in order, padded per row (B, G),
    and which of them are real (B, G) bool."""
    counts = generated.sum(1)
    G = int(counts.max())
    gen_pos = torch.argsort((~generated).to(torch.int8), dim=1, stable=True)[:, :G]  # generated first, in order
    return gen_pos, torch.arange(G, device=generated.device)[None, :] < counts[:, None]


def _make_plan(denoiser: Denoiser, generated: torch.Tensor, *, steps: int, block_length: int | None,
               tail_ids: Sequence[int], allow_ids: Sequence[int], cfg_scale: float,
               cfg_prompt: torch.Tensor | None) -> _Plan:
    """The call's fixed plan: where logits are computed, the blocks and their step budget, the holes."""
    B, T = generated.shape
    device = generated.device
    counts = generated.sum(1)
    gen_pos, gen_valid = _generated_positions(generated)

    # Block index of each generated position (rank among the generated positions // block_length).
    rank = torch.cumsum(generated.long(), 1) - 1
    block = rank // block_length if block_length else torch.zeros_like(rank)
    n_blocks = int(block[generated].max()) + 1
    steps = max(1, min(steps, int(counts.max())))
    steps_per_block = max(1, math.ceil(steps / n_blocks))

    seg_start, seg_end = _segments(generated)
    tail = torch.tensor(sorted(set(tail_ids)), dtype=torch.long, device=device)
    prompt = None
    if cfg_scale:
        prompt = ~generated if cfg_prompt is None else cfg_prompt.to(device=device, dtype=torch.bool).expand(B, T)
    return _Plan(generated, gen_pos, gen_valid, block, n_blocks, steps_per_block, seg_start, seg_end, tail,
                 banned_ids(denoiser, allow_ids), prompt)


def _decode_one_step(denoiser: Denoiser, plan: _Plan, knobs: _Knobs, state: _State) -> None:
    """One forward, then commit some of the current block's masks (and pad, re-mask)."""
    eligible = _enter_block(plan, state)  # (B, T)
    k_min = _step_share(plan, knobs.schedule, state, eligible.sum(1))  # (B,) known before the forward
    x0, conf, score, logp, ent = _predict(denoiser, plan, knobs, state)  # each (B, G)
    # Scatter per-generated-position results back to (B, T).
    ids, gen_pos = state.ids, plan.gen_pos
    x0_t = ids.clone().scatter(1, gen_pos, torch.where(plan.gen_valid, x0, ids.gather(1, gen_pos)))
    commit = _choose_commits(plan, knobs, state, eligible, k_min, x0_t, x0, conf, score, ent)
    _commit(denoiser, plan, knobs, state, commit, x0_t, _scatter(plan, logp, 0.0))


def _enter_block(plan: _Plan, state: _State) -> torch.Tensor:
    """(B, T) bool, the positions this step may commit: the masks of each row's current block, the
    lowest block that still has masks. A row entering a new block starts its step count afresh."""
    big = torch.full_like(plan.block, plan.n_blocks)
    new_current = torch.where(state.masked, plan.block, big).min(1).values
    state.spent = torch.where(new_current != state.current, torch.zeros_like(state.spent), state.spent)
    state.current = new_current
    return state.masked & (plan.block == new_current[:, None])


def _predict(denoiser: Denoiser, plan: _Plan, knobs: _Knobs, state: _State):
    """One forward over the whole sequence: per generated position the token, its confidence, the
    ordering score, its log-prob and the entropy (see choose_tokens). (B, G) each."""
    logits = guided_logits(denoiser, state.ids, plan.gen_pos, prompt=plan.prompt, cfg_scale=knobs.cfg_scale)
    logits = logits.to(torch.float32, copy=True)  # (B, G, V), ours to edit
    state.forwards += 1
    suppress_(logits, plan.banned, denoiser.vocab_size)
    if plan.tail.numel():
        _forbid_tail_before_content_(logits, state.ids, plan.gen_pos, state.masked, plan.generated, plan.tail,
                                     plan.seg_end)
    return choose_tokens(logits, knobs.strategy, knobs.temperature, knobs.top_k, knobs.top_p, knobs.generator,
                         entropy=knobs.entropy_bound is not None)


def _scatter(plan: _Plan, values: torch.Tensor, fill: float) -> torch.Tensor:
    """(B, G) per-generated-position `values` to (B, T), `fill` elsewhere."""
    B, T = plan.generated.shape
    out = torch.full((B, T), fill, device=plan.generated.device)
    return out.scatter(1, plan.gen_pos, torch.where(plan.gen_valid, values, fill))


def _choose_commits(plan: _Plan, knobs: _Knobs, state: _State, eligible: torch.Tensor, k_min: torch.Tensor,
                    x0_t: torch.Tensor, x0: torch.Tensor, conf: torch.Tensor, score: torch.Tensor,
                    ent: torch.Tensor | None) -> torch.Tensor:
    """(B, T) bool, the positions this step commits: the schedule's share `k_min`, then the threshold,
    entropy-bound and early-stop rules; a tail id before content committed in the same step waits."""
    score_t = torch.where(eligible, _scatter(plan, score, NEG_INF), NEG_INF)
    commit = pick_positions(score_t, k_min, temperature=knobs.position_temperature, generator=knobs.generator)
    if knobs.threshold is not None:
        commit |= eligible & (_scatter(plan, conf, NEG_INF) >= knobs.threshold)
    if knobs.entropy_bound is not None:
        ent_t = _scatter(plan, ent, float("inf"))
        commit |= _entropy_bounded(torch.where(eligible, ent_t, float("inf")), knobs.entropy_bound)
    if knobs.early_stop is not None:
        x0_g = torch.where(plan.gen_valid, x0, -1)
        if state.prev_x0 is not None:
            open_g = state.masked.gather(1, plan.gen_pos) & plan.gen_valid
            settled = ((x0_g == state.prev_x0) & (conf >= knobs.early_stop)) | ~open_g
            commit |= eligible & settled.all(1, keepdim=True)
        state.prev_x0 = x0_g
    if plan.tail.numel():
        # Positions committed together in one step: a tail id before content of the same step waits.
        after = torch.where(commit, x0_t, state.ids)
        content = plan.generated & ~(state.masked & ~commit) & ~torch.isin(after, plan.tail)
        commit &= ~(torch.isin(x0_t, plan.tail) & _content_after(content, plan.seg_end))
    return commit


def _step_share(plan: _Plan, schedule: str, state: _State, n_open: torch.Tensor) -> torch.Tensor:
    """(B,) how many of the `n_open` masks of each row's current block this step commits under `schedule`,
    `state.spent` steps into the block's `plan.steps_per_block` ("rounded" moves `spent` past the steps
    that would commit nothing: they cost no forward)."""
    left = (plan.steps_per_block - state.spent).clamp(min=1)
    if schedule == "even":  # ceil(n / steps left): the even split with the remainder first
        return torch.minimum(torch.div(n_open + left - 1, left, rounding_mode="floor"), n_open)
    if schedule == "rounded":
        shares = []
        for b in range(n_open.size(0)):
            n, k = int(n_open[b]), rounded_share(int(n_open[b]), int(left[b]), plan.steps_per_block)
            while k == 0 and n and int(left[b]) > 1:
                state.spent[b] += 1
                left[b] -= 1
                k = rounded_share(n, int(left[b]), plan.steps_per_block)
            shares.append(k)
        return torch.tensor(shares, dtype=torch.long, device=n_open.device)
    # linear, in float32 as Dream computes it: int(n * (1 - s / t)) with t, s the step's grid points
    grid = torch.linspace(1, 1e-3, plan.steps_per_block + 1, device=n_open.device)
    i = state.spent.clamp(max=plan.steps_per_block - 1)
    t, s = grid[i], grid[i + 1]
    share = (n_open.to(torch.float32) * (1 - s / t)).long()
    return torch.where(left <= 1, n_open, torch.minimum(share, n_open))


def rounded_share(n: int, left: int, steps: int) -> int:
    """schedule "rounded" (dLLM's get_num_transfer_tokens with its linear alpha schedule): of `n` open
    masks with `left` of `steps` steps to go, round-half-to-even n·(1 − s/t) for t = left/steps and
    s = (left − 1)/steps, the ratio in float32 as (1 − α(s)) / (1 − α(t)) with α(u) = 1 − u."""
    t = torch.tensor(left / steps, dtype=torch.float32)
    s = torch.tensor((left - 1) / steps, dtype=torch.float32)
    ratio = ((1 - (1 - s)) / (1 - (1 - t))).item()
    return min(n, int(torch.round(torch.tensor(n, dtype=torch.float64) * (1 - ratio))))


def _commit(denoiser: Denoiser, plan: _Plan, knobs: _Knobs, state: _State, commit: torch.Tensor,
            x0_t: torch.Tensor, logp_t: torch.Tensor) -> None:
    """Write the committed tokens; pad after a committed tail id; re-mask weak commits (remask_below)."""
    state.ids = torch.where(commit, x0_t, state.ids)
    state.logprobs = torch.where(commit, logp_t, state.logprobs)
    # A committed mask id (possible only when a call allows it) leaves the position masked, as in the
    # authors' decoders, which write the argmax wherever they commit.
    state.masked &= ~commit | (x0_t == denoiser.mask_id)
    if plan.tail.numel():
        state.ids, state.masked = _pad_after_tail(state.ids, state.masked, plan.generated, plan.tail, plan.seg_start)
    if knobs.remask_below is not None:
        redo = plan.generated & ~state.masked & ~commit & ~state.remasked & (state.logprobs.exp() < knobs.remask_below)
        if redo.any():
            state.ids = torch.where(redo, torch.full_like(state.ids, denoiser.mask_id), state.ids)
            state.masked |= redo
            state.remasked |= redo
            state.logprobs = torch.where(redo, torch.zeros_like(state.logprobs), state.logprobs)
    state.spent += 1


def _sample_remasking(denoiser: Denoiser, state: _State, generated: torch.Tensor, *, steps: int,
                      allow_ids: Sequence[int], top_k: int | None, top_p: float | None, temperature: float,
                      generator: torch.Generator | None, callback: Callback | None) -> SampleOutput:
    """schedule "remask" (see the module docstring): step i predicts every generated position, masks
    again the ⌊N·(1 − (i+1)/steps)⌋ least confident (confidence: the probability of the predicted
    token), and the masks that stay open take their prediction; stops early when no mask is left."""
    counts = generated.sum(1)
    gen_pos, valid = _generated_positions(generated)
    banned = banned_ids(denoiser, allow_ids)
    for i in range(steps):
        if not state.masked.any():
            break
        logits = denoiser.logits(state.ids, gen_pos).to(torch.float32, copy=True)  # (B, G, V)
        state.forwards += 1
        suppress_(logits, banned, denoiser.vocab_size)
        x0, conf, _, logp, _ = choose_tokens(logits, "confidence", temperature, top_k, top_p, generator, entropy=False)
        conf = torch.where(valid & torch.isfinite(conf), conf, float("inf"))
        n_mask = (counts.to(torch.float32) * (1.0 - (i + 1) / steps)).floor().long().clamp(min=0)
        rank = torch.argsort(torch.argsort(conf, dim=1), dim=1)  # each position's rank, least confident first
        again = valid & (rank < n_mask[:, None])  # (B, G)
        was_masked = state.masked.gather(1, gen_pos) & valid
        take = was_masked & ~again
        ids_g = state.ids.gather(1, gen_pos)
        ids_g = torch.where(again, denoiser.mask_id, torch.where(take, x0, ids_g))
        state.ids = state.ids.scatter(1, gen_pos, torch.where(valid, ids_g, state.ids.gather(1, gen_pos)))
        state.logprobs = state.logprobs.scatter(1, gen_pos, torch.where(take, logp, state.logprobs.gather(1, gen_pos)))
        state.masked = (state.ids == denoiser.mask_id) & generated
        if callback is not None:
            callback(state.forwards, state.ids, state.masked)
    return SampleOutput(state.ids, state.logprobs, generated, state.forwards)


def _segments(generated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every position, the first and last index of the run of generated positions it belongs to. (B, T) each."""
    B, T = generated.shape
    idx = torch.arange(T, device=generated.device).expand(B, T)
    prev = torch.cat([torch.zeros_like(generated[:, :1]), generated[:, :-1]], 1)
    nxt = torch.cat([generated[:, 1:], torch.zeros_like(generated[:, :1])], 1)
    starts = torch.where(generated & ~prev, idx, torch.full_like(idx, -1)).cummax(1).values
    ends_rev = torch.where(generated & ~nxt, idx, torch.full_like(idx, T)).flip(1).cummin(1).values.flip(1)
    return starts, ends_rev


def banned_ids(denoiser: Denoiser, allow: Sequence[int] = ()) -> torch.Tensor:
    """The forbidden specials (mask, bos, ...) a call does not `allow`, as a tensor of ids for `suppress_`."""
    return torch.tensor(sorted(set(denoiser.forbidden_ids) - set(allow)), dtype=torch.long, device=denoiser.device)


def suppress_(logits: torch.Tensor, banned: torch.Tensor, vocab_size: int) -> None:
    """In place: ids past the tokenizer's vocabulary and the `banned` ids (forbidden specials such as
    mask and bos, less those a call allows) are never sampled."""
    V = logits.size(-1)
    if V > vocab_size:
        logits[..., vocab_size:] = NEG_INF
    if banned.numel():
        logits.index_fill_(-1, banned[banned < V], NEG_INF)


def _content_after(content: torch.Tensor, seg_end: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: is there a `content` position later in the same hole?"""
    B, T = content.shape
    # rc[p] = number of content positions at index ≥ p (a reversed cumsum), with rc[T] = 0.
    zero = torch.zeros(B, 1, dtype=torch.long, device=content.device)
    rc = torch.cat([content.long().flip(1).cumsum(1).flip(1), zero], 1)
    return (rc[:, 1:] - rc.gather(1, seg_end.clamp(max=T - 1) + 1)) > 0


def _forbid_tail_before_content_(logits, ids, gen_pos, masked, generated, tail, seg_end) -> None:
    """In place: a tail id may not be placed where committed content follows later in the same hole."""
    content = generated & ~masked & ~torch.isin(ids, tail)  # (B, T)
    blocked = _content_after(content, seg_end).gather(1, gen_pos)  # (B, G)
    if blocked.any():
        logits[..., tail] = logits[..., tail].masked_fill(blocked[..., None], NEG_INF)


def _pad_after_tail(ids, masked, generated, tail, seg_start):
    """Once a tail id is committed in a hole, the masks after it in that hole become that tail id."""
    is_tail = generated & ~masked & torch.isin(ids, tail)
    if not is_tail.any():
        return ids, masked
    B, T = ids.shape
    idx = torch.arange(T, device=ids.device).expand(B, T)
    # first tail position at or before p within p's hole: running max of tail indices, reset per hole.
    last_tail = torch.where(is_tail, idx, torch.full_like(idx, -1)).cummax(1).values
    in_hole = last_tail >= seg_start
    fill = masked & in_hole
    tail_tok = ids.gather(1, last_tail.clamp(min=0))
    return torch.where(fill, tail_tok, ids), masked & ~fill


def _entropy_bounded(ent: torch.Tensor, bound: float) -> torch.Tensor:
    """(B, T) bool: per row, the lowest-entropy positions whose summed entropy, less the largest, is ≤ bound.

    Positions with entropy inf (not eligible) are never taken."""
    srt, idx = ent.sort(1)
    finite = torch.isfinite(srt)
    cum = torch.where(finite, srt, 0.0).cumsum(1)
    take = finite & (cum - torch.where(finite, srt, 0.0) <= bound)  # sorted ascending: the last taken is the max
    return torch.zeros_like(take).scatter(1, idx, take)


def choose_tokens(logits, strategy, temperature, top_k, top_p, generator, *, entropy: bool = True):
    """Per position: the token to commit, its confidence, the ordering score, its log-prob and the
    distribution's entropy (nats; None unless `entropy` or the entropy strategy asks for it). (B, G) each."""
    # The nucleus first, then the k most likely, as Dream, CoDA and Open-dLLM filter (also at temperature 0).
    if top_p is not None and 0.0 < top_p < 1.0:
        logits = _nucleus(logits, top_p)
    if top_k is not None and top_k > 0 and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    probs = torch.softmax(logits, -1)  # (B, G, V) at temperature 1: confidences are the model's
    if temperature > 0:
        flat = torch.softmax(logits / temperature, -1).reshape(-1, logits.size(-1))
        x0 = torch.multinomial(flat.double(), 1, generator=generator).view(logits.shape[:-1])
    else:
        x0 = probs.argmax(-1)
    p_x0 = probs.gather(-1, x0[..., None]).squeeze(-1)
    logp = torch.log(p_x0.clamp_min(1e-30))
    ent = torch.special.entr(probs).sum(-1) if entropy or strategy == "entropy" else None  # −Σ p log p
    if strategy == "confidence":
        score = p_x0
    elif strategy == "margin":
        top2 = probs.topk(2, dim=-1).values
        score = top2[..., 0] - top2[..., 1]
    elif strategy == "entropy":
        score = (probs * torch.log(probs + 1e-10)).sum(-1)  # −entropy, low entropy first (Dream's formula)
    else:  # origin: a random order
        score = torch.rand(p_x0.shape, generator=generator, device=p_x0.device)
    return x0, p_x0, score, logp, ent


def _nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logits, idx = logits.sort(-1, descending=True)
    cum = torch.softmax(sorted_logits, -1).cumsum(-1)
    drop = cum - torch.softmax(sorted_logits, -1) > top_p  # keep the smallest set whose mass reaches p
    return logits.masked_fill(drop.scatter(-1, idx, drop), NEG_INF)


def pick_positions(score: torch.Tensor, k: torch.Tensor, *, temperature: float | None,
                   generator: torch.Generator | None) -> torch.Tensor:
    """(B, T) bool: k[b] positions of each row among those with a finite score.

    No `temperature` (None or 0): the k highest-scoring. Otherwise k drawn without replacement from
    softmax(score / temperature), as Dream's `alg_temp` does with torch.multinomial: here by the
    Gumbel-top-k trick (the k largest of score / temperature + Gumbel noise have that distribution),
    with noise from `generator`. A temperature so small that score / temperature overflows ranks the row
    by score, the limit as temperature → 0."""
    if temperature:
        score = gumbel_keys(score, temperature, generator)
    return _top_k_mask(score, k)


def gumbel_keys(score: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """score / temperature + Gumbel(0, 1) noise per finite entry (−inf stays −inf), shifted per row; in
    float64 (float32 on MPS, which has no float64)."""
    finite = score > NEG_INF
    s = score.to(torch.float32 if score.device.type == "mps" else torch.float64)
    top = s.masked_fill(~finite, NEG_INF).max(1, keepdim=True).values
    scaled = (s - top) / temperature  # ≤ 0; the row's best is 0
    u = torch.rand(s.shape, generator=generator, device=s.device, dtype=s.dtype)
    keys = torch.where(finite, scaled - torch.log(-torch.log(u.clamp_min(torch.finfo(s.dtype).tiny))), NEG_INF)
    overflowed = (finite & ~torch.isfinite(scaled)).any(1, keepdim=True)
    return torch.where(overflowed, s, keys)


def _top_k_mask(score: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the k[b] highest-scoring positions of each row (scores of −inf are never taken)."""
    kmax = int(k.max()) if k.numel() else 0
    if kmax == 0:
        return torch.zeros_like(score, dtype=torch.bool)
    top = score.topk(kmax, dim=1).indices  # (B, kmax)
    keep = torch.arange(kmax, device=score.device)[None, :] < k[:, None]
    out = torch.zeros_like(score, dtype=torch.bool).scatter(1, top, keep)
    return out & (score > NEG_INF)

"""The Denoiser protocol: all the sampler knows about a model.

A denoiser maps token ids with some positions set to `mask_id` to logits over the vocabulary.
Model families (diffucode's own transformer, Dream/DiffuCoder, LLaDA) implement it with a thin
adapter, so sampling, infill and validation never depend on which family runs underneath.
"""

from __future__ import annotations

import functools
from typing import Protocol, runtime_checkable

import torch

from diffucode.errors import ConfigError
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
    # Declared capabilities (every denoiser states them; the infill path reads them, never probes):
    cacheable: bool  # has prefill(ids, positions) -> (logits, cache) and forward_cached(ids, cache, active, positions):
    #                  CachedDenoiser can wrap it (the approximate K/V cache); a cache prefilled from one row
    #                  serves a batch of any number of rows (scoring.py scores many texts against one context)
    expand_id: int | None  # DreamOn: a mask predicted as this becomes two masks (expand.py); None: no expand/delete
    delete_id: int | None  # ... and a mask predicted as this is removed
    infill_frame: tuple[tuple[int, ...], tuple[int, ...]]  # ids around the context (DreamOn: BOS, EOS); ((), ()): none

    def logits(self, ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, V) logits, or (B, P, V) at `positions` (B, P)."""
        ...



COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


class NativeDenoiser:
    """diffucode's own DiffusionTransformer behind the Denoiser protocol.

    `compile`: a `torch.compile` mode for the model's three entry points (forward, prefill, cached
    step), or "none". Shapes are dynamic, so one compilation serves every context length; on CUDA,
    "reduce-overhead" also replays the step as a CUDA graph, one recorded per shape seen.

    `buckets` (on by default with "reduce-overhead"): calls are padded to a few shapes, so that a
    long-lived process records a bounded set of CUDA graphs instead of one per context length and
    hole size. The context is padded on the right to a multiple of `T_BUCKET` tokens (never past the
    model's context) and the padding is hidden from attention by a key mask; the positions asked for
    are padded to a multiple of `P_BUCKET` by repeating the last one. The logits at the real
    positions are those of the unpadded call.

    Compiling costs a minute or two up front on a small CPU and pays only in long-lived processes (the
    language server, evals): see benchmarks/bench_engine.py and bench_gpu.py for what it buys.
    """

    T_BUCKET = 64
    P_BUCKET = 16

    def __init__(self, model: DiffusionTransformer, tokenizer: Tokenizer, *, compile: str = "none",
                 buckets: bool | None = None):
        if compile not in COMPILE_MODES:
            raise ConfigError(f"unknown compile mode {compile!r}; choose from {', '.join(COMPILE_MODES)}")
        self.model = model
        self.mask_id = tokenizer.mask_id
        self.pad_id = tokenizer.pad_id
        self.eos_id = tokenizer.eos_id
        self.vocab_size = tokenizer.vocab_size
        self.forbidden_ids = frozenset(i for i in (tokenizer.mask_id, tokenizer.bos_id, tokenizer.expand_id)
                                       if i is not None)
        self.max_seq_len = model.cfg.max_seq_len
        self.cacheable = True  # has prefill / forward_cached (CachedDenoiser)
        self.expand_id = self.delete_id = None  # holes are sized by pad tails or the length search, not expand/delete
        self.infill_frame = ((), ())
        self.compile = compile
        self.forward, self.prefill, self.forward_cached = model.forward, model.prefill, model.forward_cached
        if compile != "none":
            wrap = functools.partial(_compiled, mode=None if compile == "default" else compile)
            self.forward, self.prefill, self.forward_cached = (wrap(self.forward), wrap(self.prefill),
                                                               wrap(self.forward_cached))
        self.buckets = compile == "reduce-overhead" if buckets is None else buckets
        if self.buckets:
            self.forward, self.prefill, self.forward_cached = _bucketed(
                self.forward, self.prefill, self.forward_cached, t=self.T_BUCKET, p=self.P_BUCKET,
                limit=self.max_seq_len,
            )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()  # not inference_mode: compiled graphs guard on it, and the callers' tensors are ordinary
    def logits(self, ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(ids, positions=_rows(positions, ids))

    def warm_up(self) -> None:
        """Run each entry point at batch 1 and 2, with several positions and with one, so that
        compilation happens now, not in a user's request.

        The inputs are ordinary tensors under no_grad, as in real calls: dynamo guards on that."""
        T = min(64, self.max_seq_len)
        for batch in (1, 2):
            ids = torch.full((batch, T), self.mask_id, dtype=torch.long, device=self.device)
            pos = torch.arange(T // 2, T // 2 + 4, device=self.device).expand(batch, -1).contiguous()
            with torch.no_grad():
                self.forward(ids, positions=pos)
                _, cache = self.prefill(ids, positions=pos)
                self.forward_cached(ids, cache, pos)
                # a single position (a one-token hole) is specialised too
                self.forward(ids, positions=pos[:, :1])
                _, cache = self.prefill(ids, positions=pos[:, :1])
                self.forward_cached(ids, cache, pos[:, :1])


def _rows(positions: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor | None:
    """Positions as a (B, P) tensor."""
    return None if positions is None else positions.expand(ids.size(0), -1)


def _bucketed(forward, prefill, forward_cached, *, t: int, p: int, limit: int):
    """The three entry points with the context padded to a multiple of `t` (at most `limit`) behind a
    key mask, and positions padded to a multiple of `p` by repeating the last; outputs cut back."""

    def up(n: int, multiple: int, cap: int | None = None) -> int:
        n = -(-n // multiple) * multiple
        return n if cap is None else min(n, cap)

    def widen(x: torch.Tensor, width: int, value: int | None = None) -> torch.Tensor:
        """(B, N) -> (B, width): right-padded with `value`, or with copies of the last column."""
        extra = width - x.size(1)
        if extra <= 0:
            return x
        fill = x[:, -1:].expand(-1, extra) if value is None else x.new_full((x.size(0), extra), value)
        return torch.cat([x, fill], 1)

    def context(ids: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        keep = (torch.arange(width, device=ids.device) < ids.size(1)).expand(ids.size(0), -1)
        return widen(ids, width, 0), keep

    def rows(x: torch.Tensor | None, B: int) -> torch.Tensor | None:
        """(B, N) or (N,) -> (B, N') with N' the bucket of N."""
        return None if x is None else widen(x.expand(B, -1) if x.dim() == 1 else x, up(x.size(-1), p))

    @functools.wraps(forward)
    def forward_b(ids, positions=None):
        T = ids.size(1)
        padded, keep = context(ids, up(T, t, limit))
        out = forward(padded, positions=rows(positions, ids.size(0)), key_padding_mask=keep)
        return out[:, : T if positions is None else positions.size(-1)]

    @functools.wraps(prefill)
    def prefill_b(ids, positions=None):
        T = ids.size(1)
        padded, keep = context(ids, up(T, t, limit))
        logits, cache = prefill(padded, positions=rows(positions, ids.size(0)), key_padding_mask=keep)
        return logits[:, : T if positions is None else positions.size(-1)], _PaddedCache(cache, length=T)

    @functools.wraps(forward_cached)
    def forward_cached_b(ids, cache, active, positions=None):
        if ids.size(1) != getattr(cache, "length", None):
            raise ValueError(f"a cache made for {getattr(cache, 'length', '?')} tokens used with {ids.size(1)}: "
                             "prefill again")
        padded, keep = context(ids, cache[0][0].size(2))  # the width the cache was made at
        out = forward_cached(padded, list(cache), rows(active, ids.size(0)), positions=rows(positions, ids.size(0)),
                             key_padding_mask=keep)
        return out[:, : active.size(-1) if positions is None else positions.size(-1)]

    return forward_b, prefill_b, forward_cached_b


class _PaddedCache(list):
    """A bucketed prefill's per-layer (K, V), padded past `length`, the real number of tokens."""

    def __init__(self, layers, *, length: int):
        super().__init__(layers)
        self.length = length


def _contiguous_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _compiled(fn, *, mode: str | None):
    """torch.compile `fn` so that one graph serves every context length, hole size and batch size.

    Dynamo guards on shapes and strides: every tensor argument is passed with contiguous strides
    (copied when it is a view) and with its sequence-like dimensions marked dynamic (batch too when
    > 1; size-1 dimensions are always specialised, so batch 1, the editor's case, gets a graph of its
    own). With CUDA graphs
    ("reduce-overhead") the outputs are copied out, because the K/V cache a prefill returns is read by
    the cached steps after it while each replay reuses its graph's output memory."""
    compiled = torch.compile(fn, mode=mode)

    def norm(t):
        if isinstance(t, (list, tuple)):
            return type(t)(norm(x) for x in t)
        if not isinstance(t, torch.Tensor):
            return t
        if t.stride() != _contiguous_strides(t.shape):  # e.g. a slice, or an expanded view
            t = t.clone(memory_format=torch.contiguous_format)
        dims = (0, 1) if t.dim() == 2 else (0, 2)  # ids/positions (B, T|P); cached K/V (B, H, T, Dh)
        for dim in dims:
            if t.size(dim) > 1:
                torch._dynamo.maybe_mark_dynamic(t, dim)
        return t

    def copy(t):  # outputs of a CUDA graph are overwritten by its next replay
        return type(t)(copy(x) for x in t) if isinstance(t, (list, tuple)) else t.clone()

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # every call is a step of its own: no tree of graphs
        out = compiled(*(norm(a) for a in args), **{k: norm(v) for k, v in kwargs.items()})
        return copy(out) if mode == "reduce-overhead" else out

    return call


class CachedDenoiser:
    """Approximate K/V caching over one denoising job (Fast-dLLM's idea, for full-attention models).

    The first call, and every `refresh_every`-th after it, is a full forward that fills the cache.
    Calls in between recompute only the positions being generated (`positions`): the context's keys
    and values come from the cache, stale only in how the context attended to the hole at the last
    refresh. The context never changes during a job, so its own tokens are exact as of that refresh.
    `refresh_every=1` is exactly the uncached model. Create one per job: it holds that job's cache.
    `base` is any denoiser with `cacheable` true: diffucode's own (NativeDenoiser) or a public
    checkpoint run through transformers (families.hf.HFDenoiser).
    """

    def __init__(self, base, *, refresh_every: int = 4):
        if refresh_every < 1:
            raise ValueError("refresh_every must be ≥ 1")
        self.base = base
        self.refresh_every = refresh_every
        for name in ("mask_id", "pad_id", "eos_id", "vocab_size", "forbidden_ids", "max_seq_len", "expand_id",
                     "delete_id", "infill_frame"):
            setattr(self, name, getattr(base, name))
        self.cacheable = False  # it is the cache
        self._cache = None
        self._shape = None
        self._calls = 0
        self.full_forwards = 0

    @property
    def device(self) -> torch.device:
        return self.base.device

    @torch.no_grad()
    def logits(self, ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is None:
            return self.base.logits(ids)
        positions = _rows(positions, ids)
        refresh = self._cache is None or self._shape != tuple(ids.shape) or self._calls % self.refresh_every == 0
        self._calls += 1
        if refresh:
            self._shape = tuple(ids.shape)
            self.full_forwards += 1
            logits, self._cache = self.base.prefill(ids, positions=positions)
            return logits
        return self.base.forward_cached(ids, self._cache, positions)

"""The API every front end calls: infill, rewrite and complete a text, returning ranked edits.

All positions are 0-based offsets into the Python `str` (front ends convert from lines or UTF-16).
The text outside the spans is never re-encoded: new text is spliced between the original prefix and
suffix strings, so every byte outside a span stays as it was (CRLF, tabs, non-ASCII).

Length is not known in advance. Models trained with pad tails (`Engine.pad_tail`) get a hole larger
than the expected content and end it with <|pad|>; models trained with expand/delete tokens
(DreamOn) grow and shrink the hole while they write (expand.py); other models get a short search
over hole lengths ranked by the model's own mean log-probability; `length=` fixes it (for oracle
evaluations).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from diffucode import guard, syntax
from diffucode.denoiser import CachedDenoiser
from diffucode.errors import ConfigError, GenerationCancelled, SpanError
from diffucode.expand import sample_expanding
from diffucode.engine import Engine
from diffucode.sampler import sample
from diffucode.settings import RETRY_TEMPERATURE, InfillSettings

PL_STRIDE = 4  # pseudo_likelihood masks every 4th token in each of min(4, n) rows, one batch for n tokens
MASK_GLYPH = "\u2591"  # how a still-masked token shows in streamed intermediate text

@dataclass(frozen=True)
class Edit:
    start: int  # replaced range in the original text, [start, end)
    end: int
    text: str  # the new text for that range


@dataclass(frozen=True)
class Candidate:
    edits: tuple[Edit, ...]
    score: float  # mean log-prob per generated token (higher is better)
    valid: bool
    reason: str = ""  # why it failed validation, or how it was repaired
    n_tokens: int = 0  # content tokens generated (pads excluded)

    def apply(self, source: str) -> str:
        return apply_edits(source, self.edits)


@dataclass
class InfillResult:
    candidates: list[Candidate]  # valid ones first, each group by score
    forwards: int = 0
    elapsed_ms: float = 0.0
    hole_tokens: tuple[int, ...] = ()  # hole sizes tried
    n_invalid: int = 0
    refused: str | None = None  # no candidate is left valid and the best was refused as destructive: why (guard.py)

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates and self.candidates[0].valid else None


@dataclass(frozen=True)
class StepUpdate:
    """Streamed after each denoising step: the first candidate's hole texts, masks shown as MASK_GLYPH."""

    forwards: int
    masked_left: int
    texts: tuple[str, ...]


OnStep = Callable[[StepUpdate], None]
ShouldStop = Callable[[], bool]


def finish(kind: str, source: str, candidates, settings: InfillSettings, *, forwards: int, t0: float,
           hole_tokens: tuple[int, ...]) -> InfillResult:
    """The result of a generation: candidates ranked (valid first, each group by score, a fill that only
    inserts blanks after any that writes something), destructive ones refused unless settings.allow_delete
    (guard.py; kind "fill" or "rewrite"), invalid ones counted."""
    ranked = sorted(candidates, key=lambda c: (not c.valid, adds_nothing(c), -c.score))
    ranked = guard.screen(kind, source, ranked, allow_delete=settings.allow_delete)
    return InfillResult(ranked, forwards, (time.perf_counter() - t0) * 1e3, tuple(hole_tokens),
                        sum(not c.valid for c in ranked), guard.refused_reason(ranked))


def adds_nothing(cand: Candidate) -> bool:
    """Whether a candidate only inserts blanks (every edit an insertion of whitespace or nothing): valid, but
    no answer to a request to write there."""
    return all(e.start == e.end and not e.text.strip() for e in cand.edits)


def apply_edits(source: str, edits: Sequence[Edit]) -> str:
    out, pos = [], 0
    for e in sorted(edits, key=lambda e: e.start):
        out += [source[pos : e.start], e.text]
        pos = e.end
    out.append(source[pos:])
    return "".join(out)


def check_spans(source: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    if not spans:
        raise SpanError("no span given")
    ordered = sorted((int(s), int(e)) for s, e in spans)
    prev_end = 0
    for s, e in ordered:
        if not 0 <= s <= e <= len(source):
            raise SpanError(f"span {s}-{e} is outside the text (length {len(source)}) or reversed")
        if s < prev_end:
            raise SpanError(f"span {s}-{e} overlaps the previous one")
        prev_end = e
    return ordered


# -- public API -------------------------------------------------------------------------------------
def infill(
    engine: Engine,
    source: str,
    spans: Sequence[tuple[int, int]],
    settings: InfillSettings = InfillSettings(),
    *,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> InfillResult:
    """Discard the text of each span and generate new text for it (an empty span inserts)."""
    settings.check()
    engine.require("infill")
    spans = check_spans(source, spans)
    post = (lambda text, _span: first_lines(text, settings.max_lines)) if settings.max_lines else None
    return _generate(engine, source, spans, settings, post=post, on_step=on_step, should_stop=should_stop)


def first_lines(text: str, n: int) -> str:
    """The first `n` lines of `text`, each with its newline (CRLF included)."""
    end = -1
    for _ in range(n):
        end = text.find("\n", end + 1)
        if end < 0:
            return text
    return text[: end + 1]


def complete(
    engine: Engine,
    source: str,
    cursor: int,
    settings: InfillSettings = InfillSettings(),
    *,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> InfillResult:
    """Fill at a cursor: the hole's extent and shape (rest of line, expression, statement, body) come from syntax.py."""
    settings.check()
    if not 0 <= cursor <= len(source):
        raise SpanError(f"cursor {cursor} is outside the text (length {len(source)})")
    if engine.complete is not None:  # declared by the family: e.g. DiffusionGemma continues the text instead
        return engine.complete(engine, source, cursor, settings, on_step=on_step, should_stop=should_stop)
    hole = syntax.hole_at_cursor(source, cursor, language=settings.language)
    settings = replace(settings, max_new_tokens=hole.token_budget(settings.max_new_tokens))
    limit = hole.max_lines

    def cut(text: str, _span: tuple[int, int]) -> str:
        if limit is None:
            return text
        lines = text.split("\n")
        # the text has the file's newlines: a CRLF line split at \n keeps its \r, which goes with the cut
        return "\n".join(lines[:limit]).removesuffix("\r") if len(lines) > limit else text

    return _generate(engine, source, [(hole.start, hole.end)], settings, post=cut, on_step=on_step,
                     should_stop=should_stop)


def rewrite(
    engine: Engine,
    source: str,
    span: tuple[int, int],
    settings: InfillSettings = InfillSettings(),
    *,
    fraction: float | None = 0.3,
    below: float | None = None,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> InfillResult:
    """Keep the span but re-predict part of it: its lowest-confidence tokens under the model.

    Confidence of each token is its probability when masked, with the rest visible (pseudo-likelihood,
    computed in a few strided forwards). `below` re-masks tokens under that probability ("repair");
    otherwise the lowest `fraction`. Only candidates that differ from the original are returned.
    """
    settings.check()
    engine.require("rewrite")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    if below is not None and not 0.0 < below <= 1.0:
        raise ConfigError(f"below must be in (0, 1], got {below}")
    (s, e), = check_spans(source, [span])
    if s == e:
        raise SpanError("rewrite needs a non-empty span")
    t0 = time.perf_counter()
    orig = engine.tokenizer.encode(model_text(source[s:e]))
    if not orig:
        raise SpanError("the span has no tokens to rewrite")
    layout = Layout.build(engine, source, [(s, e)], [len(orig)], settings)  # the context makes room for the span
    den = engine.denoiser
    base = torch.tensor(layout.ids_with([orig]), device=den.device)[None]  # (1, T)
    lo = len(layout.prefix_ids)
    pos = torch.arange(lo, lo + len(orig), device=den.device)
    conf = pseudo_likelihood(den, base, pos)  # (n,)
    if below is not None:
        chosen = (conf < below).nonzero().flatten()
    else:
        k = max(1, round((0.3 if fraction is None else fraction) * len(orig)))
        chosen = conf.argsort()[:k]
    if chosen.numel() == 0:
        return InfillResult([], 0, (time.perf_counter() - t0) * 1e3, (len(orig),))
    ids = base.repeat(settings.candidates, 1)
    ids[:, lo + chosen] = den.mask_id
    out = sample_layout(engine, ids, settings, on_step, should_stop, layout, [len(orig)])
    cands = []
    seen = {source[s:e]}
    for row in range(ids.size(0)):
        toks = out.ids[row, lo : lo + len(orig)].tolist()
        text = fit_to_file(engine.tokenizer.decode(toks), source, (s, e))
        if text in seen:
            continue
        seen.add(text)
        lp = out.logprobs[row, lo + chosen]
        cand = validated(source, [Edit(s, e, text)], float(lp.mean()), len(toks), settings)
        cands.append(cand)
    return finish("rewrite", source, cands, settings, forwards=out.forwards + 1, t0=t0, hole_tokens=(len(orig),))


# -- internals --------------------------------------------------------------------------------------
def model_text(text: str) -> str:
    """What the model reads: LF newlines (the file's own newline style is restored on output)."""
    return text.replace("\r\n", "\n")


def _uses_crlf(source: str) -> bool:
    crlf = source.count("\r\n")
    return crlf > 0 and crlf >= source.count("\n") - crlf


@dataclass
class Layout:
    """Token layout of one job: [prefix][hole 0][middle 0]...[hole n-1][suffix], windowed to the model's context."""

    prefix_ids: list[int]
    middle_ids: list[list[int]]  # context between consecutive holes
    suffix_ids: list[int]
    hole_lens: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, engine: Engine, source: str, spans, hole_lens: Sequence[int], settings: InfillSettings) -> "Layout":
        tok = engine.tokenizer
        before, after = engine.denoiser.infill_frame  # DreamOn: BOS, EOS around the context
        budget = min(settings.context_tokens or engine.denoiser.max_seq_len, engine.denoiser.max_seq_len)
        middles = [tok.encode(model_text(source[spans[i][1] : spans[i + 1][0]])) for i in range(len(spans) - 1)]
        room = budget - sum(hole_lens) - sum(map(len, middles)) - len(before) - len(after)
        if room < 0:
            raise SpanError(f"the holes and the text between them need more than the model's {budget}-token context")
        prefix_text, suffix_text = source[: spans[0][0]], source[spans[-1][1] :]
        suffix_ids = tok.encode(model_text(suffix_text))
        prefix_ids = tok.encode(model_text(prefix_text))
        if len(prefix_ids) + len(suffix_ids) > room:
            # Window on line boundaries: ~3/4 of the room before the hole, the rest after (unused room moves over).
            want_suffix = min(len(suffix_ids), max(room // 4, room - len(prefix_ids)))
            suffix_ids = _window(tok, suffix_text, want_suffix, from_end=False)
            prefix_ids = _window(tok, prefix_text, room - len(suffix_ids), from_end=True)
            suffix_ids = _window(tok, suffix_text, room - len(prefix_ids), from_end=False)
        return cls([*before, *prefix_ids], middles, [*suffix_ids, *after], list(hole_lens))

    def ids_with(self, holes: Sequence[Sequence[int]]) -> list[int]:
        out = list(self.prefix_ids)
        for i, h in enumerate(holes):
            out += list(h)
            out += self.middle_ids[i] if i < len(self.middle_ids) else self.suffix_ids
        return out

    def hole_starts(self) -> list[int]:
        starts, pos = [], len(self.prefix_ids)
        for i, n in enumerate(self.hole_lens):
            starts.append(pos)
            pos += n + (len(self.middle_ids[i]) if i < len(self.middle_ids) else 0)
        return starts


def _window(tok, text: str, budget: int, *, from_end: bool) -> list[int]:
    """The tokens of the most lines of `text` nearest the hole that fit in `budget` tokens."""
    if budget <= 0 or not text:
        return []
    lines = text.splitlines(keepends=True)
    if from_end:
        lines = lines[::-1]
    kept, used = [], 0
    for line in lines:
        n = len(tok.encode(model_text(line)))
        if used + n > budget:
            break
        kept.append(line)
        used += n
    if from_end:
        kept = kept[::-1]
    ids = tok.encode(model_text("".join(kept)))
    while len(ids) > budget and kept:  # per-line counts can undercount merges across lines
        kept = kept[1:] if from_end else kept[:-1]
        ids = tok.encode(model_text("".join(kept)))
    return ids


def _hole_lengths(engine: Engine, source: str, spans, settings: InfillSettings) -> list[int]:
    """The hole sizes to try (each applied to every span of the job)."""
    cap = settings.max_new_tokens
    mode = _length_mode(engine, spans, settings)
    if mode == "fixed":
        return [settings.length]
    old = max((len(engine.tokenizer.encode(model_text(source[s:e]))) for s, e in spans), default=0)
    if mode == "pad":
        return [pad_hole_length(old, cap)]
    if settings.search_lengths:
        return sorted({min(cap, max(1, n)) for n in settings.search_lengths})
    if old:
        return sorted({min(cap, max(1, n)) for n in (old // 2, old, old * 2)})
    return sorted({min(cap, n) for n in (4, 8, 16, 32)})


def pad_hole_length(old: int, cap: int) -> int:
    """The hole a pad-tail model fills for a span of `old` tokens: room for the old length and then some
    (the model ends its text with pads), at most `cap`."""
    return min(cap, max(16, math.ceil(old * 1.5) + 8))


def _expand_ids(engine: Engine) -> tuple[int, int] | None:
    """(expand id, delete id) when the model grows and shrinks holes itself (DreamOn), else None."""
    e, d = engine.denoiser.expand_id, engine.denoiser.delete_id
    return (e, d) if e is not None and d is not None else None


def _length_mode(engine: Engine, spans, settings: InfillSettings) -> str:
    mode = settings.length_mode
    if mode == "auto":
        if _expand_ids(engine) and len(spans) == 1:
            return "expand"
        return "pad" if engine.pad_tail else "search"
    if mode == "expand":
        if not _expand_ids(engine):
            raise ConfigError(f"{engine.name} has no expand/delete tokens: length mode 'expand' needs a "
                              "DreamOn-style model")
        if len(spans) != 1:
            raise ConfigError("length mode 'expand' fills one span at a time")
    return mode


def _generate(engine, source, spans, settings, *, post=None, on_step=None, should_stop=None) -> InfillResult:
    """Sample every hole length; when no candidate is valid (or each valid one would be refused as
    destructive), re-mask the best invalid one's least sure half; when still none is valid and writes
    something, draw fresh samples at a temperature (settings.retries)."""
    if _length_mode(engine, spans, settings) == "expand":
        return _generate_expanding(engine, source, spans[0], settings, post=post, on_step=on_step,
                                   should_stop=should_stop)
    t0 = time.perf_counter()
    job = _Job(engine, source, spans, settings, post, on_step, should_stop)
    lengths = _hole_lengths(engine, source, spans, settings)
    for L in lengths:
        layout = Layout.build(engine, source, spans, [L] * len(spans), settings)
        row = layout.ids_with([[engine.denoiser.mask_id] * L] * len(spans))
        job.sample(torch.tensor(row, device=engine.denoiser.device)[None].repeat(settings.candidates, 1), layout,
                   settings)
    if settings.validate and job.worst is not None and not job.any_valid():
        job.remask_worst()
    if settings.validate and settings.retries and not job.any_valid(writing=True):
        job.resample(lengths)
    return finish("fill", source, job.pooled.values(), settings, forwards=job.forwards, t0=t0,
                  hole_tokens=tuple(lengths))


@dataclass
class _Job:
    """One fill's candidates as they are sampled (one per resulting text), and the forwards spent."""

    engine: Engine
    source: str
    spans: list[tuple[int, int]]
    settings: InfillSettings
    post: Callable | None
    on_step: OnStep | None
    should_stop: ShouldStop | None
    pooled: dict[str, Candidate] = field(default_factory=dict)
    forwards: int = 0
    worst: tuple[float, torch.Tensor, torch.Tensor, Layout] | None = None  # best-scoring invalid row, to remask

    def any_valid(self, *, writing: bool = False) -> bool:
        """Whether a candidate is valid and not one that finish() refuses as destructive (guard.py); with
        `writing`, also not one that only inserts blanks."""
        return any(c.valid and not (writing and adds_nothing(c)) and (self.settings.allow_delete or not any(
            guard.refusal("fill", self.source, e.start, e.end, e.text) for e in c.edits)) for c in self.pooled.values())

    def sample(self, ids: torch.Tensor, layout: Layout, settings: InfillSettings, *, keep_lp=None,
               note: str = "") -> None:
        """Denoise the rows `ids` and pool their candidates. keep_lp (mask, logprobs): a re-masked row's
        scores outside `mask` are the earlier ones."""
        out = sample_layout(self.engine, ids, settings, self.on_step, self.should_stop, layout, layout.hole_lens)
        self.forwards += out.forwards
        for r in range(ids.size(0)):
            lp = out.logprobs[r] if keep_lp is None else torch.where(keep_lp[0], out.logprobs[r], keep_lp[1])
            cand = _candidate(self.engine, self.source, self.spans, layout, out.ids[r], lp, self.settings, self.post,
                              self.pooled if note else None, note=note)
            if cand is None:
                continue
            self.pooled[apply_edits(self.source, cand.edits)] = cand
            if not cand.valid and not note and (self.worst is None or cand.score > self.worst[0]):
                self.worst = (cand.score, out.ids[r], out.logprobs[r], layout)

    def remask_worst(self) -> None:
        """Last resort of a greedy fill (after prefix cuts and re-indenting failed in validated): re-mask the
        least confident half of the best invalid candidate's content and keep denoising from the rest."""
        _, ids, lp, layout = self.worst
        content = _content_mask(self.engine, ids, layout)
        if not content.any():
            return
        redo = content & (lp <= lp[content].median())
        batch = torch.where(redo, torch.full_like(ids, self.engine.denoiser.mask_id), ids)
        self.sample(batch[None].repeat(self.settings.candidates, 1), layout,
                    replace(self.settings, seed=self.settings.seed + 1), keep_lp=(redo, lp), note="remasked")

    def resample(self, lengths: list[int]) -> None:
        """settings.retries fresh rows, sampled at the settings' temperature or RETRY_TEMPERATURE, in one
        batch: in the hole length of the best invalid candidate, else the last one tried (a pad tail's only
        one)."""
        if self.worst is not None:
            layout = self.worst[3]
        else:
            layout = Layout.build(self.engine, self.source, self.spans, [lengths[-1]] * len(self.spans),
                                  self.settings)
        L = layout.hole_lens[0]
        row = layout.ids_with([[self.engine.denoiser.mask_id] * L] * len(self.spans))
        ids = torch.tensor(row, device=self.engine.denoiser.device)[None].repeat(self.settings.retries, 1)
        hot = replace(self.settings, seed=self.settings.seed + 2,
                      temperature=self.settings.temperature or RETRY_TEMPERATURE)
        self.sample(ids, layout, hot, note="resampled")


def _generate_expanding(engine, source, span, settings, *, post=None, on_step=None, should_stop=None) -> InfillResult:
    """One hole that the model lengthens (expand) and shortens (delete) as it writes; `steps` is unused."""
    t0 = time.perf_counter()
    expand_id, delete_id = _expand_ids(engine)
    cap = settings.max_new_tokens
    layout = Layout.build(engine, source, [span], [cap], settings)  # context room for the longest hole
    prefix, suffix = layout.prefix_ids, layout.suffix_ids
    old = len(engine.tokenizer.encode(model_text(source[span[0] : span[1]])))
    initial = min(cap, settings.length or max(4, old))
    pooled: dict[str, Candidate] = {}
    forwards = 0

    def callback(n: int, hole: list[int], *, stream: bool = True) -> None:
        if should_stop is not None and should_stop():
            raise GenerationCancelled("generation cancelled")
        if on_step is not None and stream:
            on_step(StepUpdate(forwards + n, hole.count(engine.denoiser.mask_id), (_render(engine, hole),)))

    if should_stop is not None and should_stop():
        raise GenerationCancelled("generation cancelled")
    for r in range(settings.candidates):
        gen = torch.Generator(device=engine.denoiser.device).manual_seed(settings.seed + r)
        out = sample_expanding(
            engine.denoiser, prefix, suffix, expand_id=expand_id, delete_id=delete_id,
            initial=initial, max_length=cap, strategy=settings.strategy, temperature=settings.temperature,
            top_k=settings.top_k, top_p=settings.top_p, threshold=None if settings.exact else settings.threshold,
            position_temperature=settings.position_temperature, cfg_scale=settings.cfg_scale, generator=gen,
            callback=lambda n, hole, r=r: callback(n, hole, stream=r == 0),  # stream the first candidate
        )
        forwards += out.forwards
        text = fit_to_file(engine.tokenizer.decode(out.ids), source, span)
        if post is not None:
            text = post(text, span)
        score = sum(out.logprobs) / len(out.logprobs) if out.logprobs else 0.0
        cand = validated(source, [Edit(span[0], span[1], text)], score, len(out.ids), settings)
        pooled.setdefault(apply_edits(source, cand.edits), cand)
    return finish("fill", source, pooled.values(), settings, forwards=forwards, t0=t0, hole_tokens=(initial,))


def _candidate(engine, source, spans, layout, ids, logprobs, settings, post, seen=None, note="") -> Candidate | None:
    """Decode one sampled row into a validated Candidate (None if `seen` already has its text)."""
    tok = engine.tokenizer
    edits, lps, n_tok = [], [], 0
    for (s, e), start, L in zip(spans, layout.hole_starts(), layout.hole_lens):
        toks = ids[start : start + L].tolist()
        n = content_length(engine.denoiser, toks)
        text = fit_to_file(tok.decode(toks[:n]), source, (s, e))
        if post is not None:
            text = post(text, (s, e))
        edits.append(Edit(s, e, text))
        lps.append(logprobs[start : start + min(n + 1, L)])  # content plus the model's decision to stop
        n_tok += n
    if seen is not None and apply_edits(source, edits) in seen:
        return None
    score = float(torch.cat(lps).mean()) if lps else 0.0
    cand = validated(source, edits, score, n_tok, settings)
    return replace(cand, reason="; ".join(x for x in (note, cand.reason) if x)) if note else cand


def _content_mask(engine, ids: torch.Tensor, layout: Layout) -> torch.Tensor:
    """(T,) bool: hole positions holding content (not the pad/eos tail)."""
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for start, L in zip(layout.hole_starts(), layout.hole_lens):
        mask[start : start + content_length(engine.denoiser, ids[start : start + L].tolist())] = True
    return mask


def hole_tail_ids(den) -> set[int]:
    """The ids that end a hole's content (the model's pad and end-of-text)."""
    return {i for i in (den.pad_id, den.eos_id) if i is not None}


def content_length(den, toks: Sequence[int]) -> int:
    """How many of a hole's tokens are content: those before its first pad or end-of-text."""
    tail = hole_tail_ids(den)
    return next((i for i, t in enumerate(toks) if t in tail), len(toks))


def sample_layout(engine, ids, settings, on_step, should_stop, layout, hole_lens, *, tail_ids=None, allow_ids=()):
    """Denoise the masks of `ids` (rows laid out by `layout`) with the settings' sampler, K/V cache and step
    schedule, streaming the first row's holes to `on_step`; also what instruct.py's prompt-and-answer
    layout samples through. tail_ids: the ids that end a hole (default: pad/eos for pad-tail models)."""
    den = engine.denoiser
    if settings.exact:
        settings = replace(settings, threshold=None, entropy_bound=None, early_stop=None, cache_refresh=None)
    if settings.cache_refresh and den.cacheable:
        den = CachedDenoiser(den, refresh_every=settings.cache_refresh)
    n_masked = int((ids[0] == den.mask_id).sum())
    steps = settings.steps or max(1, math.ceil(n_masked / 2))
    gen = torch.Generator(device=den.device).manual_seed(settings.seed)
    starts = layout.hole_starts()

    def callback(forwards: int, cur: torch.Tensor, still: torch.Tensor) -> None:
        if should_stop is not None and should_stop():
            raise GenerationCancelled("generation cancelled")
        if on_step is not None:
            texts = tuple(_render(engine, cur[0, s : s + n].tolist()) for s, n in zip(starts, hole_lens))
            on_step(StepUpdate(forwards, int(still[0].sum()), texts))

    if should_stop is not None and should_stop():
        raise GenerationCancelled("generation cancelled")
    return sample(
        den,
        ids,
        steps=steps,
        strategy=settings.strategy,
        schedule=settings.schedule or "even",
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        threshold=settings.threshold,
        entropy_bound=settings.entropy_bound,
        early_stop=settings.early_stop,
        block_length=settings.block_length,
        tail_ids=tail_ids if tail_ids is not None
        else sorted(hole_tail_ids(den)) if engine.pad_tail or settings.length_mode == "pad"
        else [t for t in [den.eos_id] if t is not None],
        allow_ids=allow_ids,
        remask_below=settings.remask_below,
        position_temperature=settings.position_temperature,
        cfg_scale=settings.cfg_scale,
        cfg_prompt=_context_mask(layout, ids.size(1), ids.device) if settings.cfg_scale else None,
        generator=gen,
        callback=callback if (on_step or should_stop) else None,
    )


def _context_mask(layout: Layout, T: int, device) -> torch.Tensor:
    """(T,) bool: the positions outside the holes — what classifier-free guidance masks (the prompt)."""
    ctx = torch.ones(T, dtype=torch.bool, device=device)
    for start, n in zip(layout.hole_starts(), layout.hole_lens):
        ctx[start : start + n] = False
    return ctx


def _render(engine, toks: list[int]) -> str:
    """Intermediate text of a hole: decoded runs of committed tokens with a glyph per mask."""
    mask, tail = engine.denoiser.mask_id, hole_tail_ids(engine.denoiser)
    out, run = [], []
    for t in toks:
        if t == mask or t in tail:
            if run:
                out.append(engine.tokenizer.decode(run))
                run = []
            if t == mask:
                out.append(MASK_GLYPH)
        else:
            run.append(t)
    if run:
        out.append(engine.tokenizer.decode(run))
    return "".join(out)


def fit_to_file(text: str, source: str, span: tuple[int, int]) -> str:
    """Fit generated text to the file: its newline style, and a trailing newline iff the span had one."""
    s, e = span
    old = source[s:e]
    line_aligned = (s == 0 or source[s - 1] == "\n") and (old.endswith("\n") or (s == e and e < len(source)))
    if line_aligned and text and not text.endswith("\n"):
        text += "\n"
    elif old and not old.endswith("\n") and text.endswith("\n") and e < len(source):
        text = text.rstrip("\r\n")
    if _uses_crlf(source):
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return text


def validated(source: str, edits: list[Edit], score: float, n_tokens: int, settings: InfillSettings) -> Candidate:
    """A Candidate of `edits`: checked by tree-sitter (syntax.validate_splice), repaired where it can be,
    else invalid with the reason; unchecked when settings.validate is off."""
    if not settings.validate:
        return Candidate(tuple(edits), score, True, "not validated", n_tokens)
    text, shift, fixed, reasons = source, 0, [], []
    valid = True
    for ed in sorted(edits, key=lambda e: e.start):
        s, e = ed.start + shift, ed.end + shift
        new = ed.text
        v = syntax.validate_splice(text, s, e, new, language=settings.language)
        if not v.ok:
            repaired = syntax.repair_splice(text, s, e, new, language=settings.language)
            if repaired is None:
                valid = False
                reasons.append(v.reason)
            else:
                new = repaired
                reasons.append(f"repaired ({v.reason})")
        elif v.reason:  # valid, with a caveat: "no grammar" (nothing was checked), a compile check skipped
            reasons.append(v.reason)
        fixed.append(Edit(ed.start, ed.end, new))
        text = text[:s] + new + text[e:]
        shift += len(new) - (e - s)
    return Candidate(tuple(fixed), score, valid, "; ".join(reasons), n_tokens)


@torch.no_grad()  # not inference_mode: a compiled model's graphs guard on it (denoiser.py)
def pseudo_likelihood(den, ids: torch.Tensor, pos: torch.Tensor, stride: int = PL_STRIDE) -> torch.Tensor:
    """p(token_i | all others) for each position in `pos`, masking every `stride`-th one per forward. (n,)"""
    n = pos.numel()
    k = min(stride, n)
    batch = ids.repeat(k, 1)  # (k, T): row r masks positions r, r+k, ...
    which = torch.arange(n, device=ids.device) % k
    for r in range(k):
        batch[r, pos[which == r]] = den.mask_id
    logits = den.logits(batch, pos.expand(k, -1)).float()  # (k, n, V)
    probs = torch.softmax(logits, -1)
    target = ids[0, pos]
    p = probs.gather(-1, target.expand(k, -1)[..., None]).squeeze(-1)  # (k, n)
    return p[which, torch.arange(n, device=ids.device)]

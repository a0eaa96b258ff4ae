"""Draft and refine: retrieved drafts of a hole, scored, partly re-masked and denoised by the model.

A masked-diffusion model is at its best editing a draft. For each draft of a span (retrieval.py), the
draft is laid into the hole and the model scores every token of it in place (pseudo-likelihood: the
token's probability when it alone is masked, context and the rest of the draft visible). The tokens
it is least sure of are masked again and denoised in context, so a line borrowed from elsewhere in the
project takes this place's names. The raw draft, the refined draft and the usual all-mask fill all
become candidates; each is validated by tree-sitter and screened by guard.py like any fill, and all
are ranked by the same model score (mean log pseudo-likelihood of the fill's tokens in place; scoring.py) plus
`retrieval_weight` × the retrieval match; drafts matching below `min_match` are left out
(docs/context.md has the measurements behind the defaults:
with today's embedded model the match decides and the model breaks ties, and refinement is off).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from diffucode import infill as api
from diffucode import syntax
from diffucode.engine import Engine
from diffucode.infill import (Candidate, Edit, InfillResult, Layout, OnStep, ShouldStop, content_length, finish,
                              fit_to_file, model_text, sample_layout, validated)
from diffucode.retrieval import Snippet
from diffucode.scoring import score_fills
from diffucode.settings import InfillSettings

MAX_REMASK = 0.5  # draft refinement re-predicts at most this share of the draft's tokens
DraftsFor = Callable[[int, int], Sequence[Snippet]]  # (start, end) of the hole -> its drafts


def infill_in_context(engine: Engine, source: str, spans: Sequence[tuple[int, int]], settings: InfillSettings,
                      drafts_for: DraftsFor | None, *, on_step: OnStep | None = None,
                      should_stop: ShouldStop | None = None) -> InfillResult:
    """infill(), with the retrieved drafts of the span as candidates too (one span, context on)."""
    if drafts_for is None or settings.context == "none" or len(spans) != 1 or not settings.drafts:
        return api.infill(engine, source, spans, settings, on_step=on_step, should_stop=should_stop)
    span = (int(spans[0][0]), int(spans[0][1]))
    drafts = offered(drafts_for(*span), settings)
    if settings.context_prompt and drafts:
        base = _infill_after(prompt_context(drafts, settings.language), engine, source, span, settings,
                             on_step=on_step, should_stop=should_stop)
    else:
        base = api.infill(engine, source, spans, settings, on_step=on_step, should_stop=should_stop)
    return with_drafts(engine, source, span, drafts, settings, base, should_stop=should_stop)


def offered(drafts: Sequence[Snippet], settings: InfillSettings) -> list[Snippet]:
    """The drafts a hole is offered: the first `drafts` of those matching at least `min_match`."""
    return [d for d in drafts if d.score >= settings.min_match][: settings.drafts]


def prompt_context(drafts: Sequence[Snippet], language: str | None) -> str:
    """The snippets as a commented preamble, each under its path (the layout of Tabby's and Continue's
    repository context), most relevant last so that it sits nearest the file's text."""
    mark = "#" if language in (None, "python") else "//"
    blocks = []
    for d in reversed(drafts):
        lines = [f"{mark} Path: {d.path.name}"] + [f"{mark} {line}".rstrip() for line in d.excerpt.split("\n")]
        blocks.append("\n".join(lines) + "\n")
    return "".join(blocks) + "\n"


def _infill_after(preamble: str, engine: Engine, source: str, span: tuple[int, int], settings: InfillSettings,
                  **kw) -> InfillResult:
    """infill() of `span` with `preamble` before the text; the edits come back in the text's offsets."""
    n = len(preamble)
    res = api.infill(engine, preamble + source, [(span[0] + n, span[1] + n)], settings, **kw)
    moved = [replace(c, edits=tuple(replace(e, start=e.start - n, end=e.end - n) for e in c.edits))
             for c in res.candidates]
    return replace(res, candidates=moved)


def complete_in_context(engine: Engine, source: str, cursor: int, settings: InfillSettings,
                        drafts_for: DraftsFor | None, *, on_step: OnStep | None = None,
                        should_stop: ShouldStop | None = None) -> InfillResult:
    """complete(), with the retrieved drafts of the hole at the cursor as candidates too.

    The drafts are ranked first. When the best valid one scores above 0, no fill of the model's own can
    outrank it (those score their mean log-probability, ≤ 0), so the model's fill is skipped: the
    first candidate is the same, sooner. Otherwise the model fills the hole, its candidates are scored
    the same way (a score never depends on the other candidates: scoring.py) and all are ranked together."""
    if drafts_for is None or settings.context == "none" or not settings.drafts or engine.complete is not None:
        return api.complete(engine, source, cursor, settings, on_step=on_step, should_stop=should_stop)
    t0 = time.perf_counter()
    settings.check()
    hole = syntax.hole_at_cursor(source, cursor, language=settings.language)
    span = (hole.start, hole.end)
    drafts = offered(drafts_for(*span), settings)
    alone = with_drafts(engine, source, span, drafts, settings, None, should_stop=should_stop) if drafts else None
    if alone is not None and alone.best is not None and alone.best.score > 0:
        return alone
    base = api.complete(engine, source, cursor, settings, on_step=on_step, should_stop=should_stop)
    if alone is None:
        return base
    own, forwards = _rescored(engine, source, base.candidates, settings)
    return finish("fill", source, _pooled(source, own, alone.candidates), settings, t0=t0,
                  forwards=alone.forwards + base.forwards + forwards, hole_tokens=base.hole_tokens)


def with_drafts(engine: Engine, source: str, span: tuple[int, int], drafts: Sequence[Snippet],
                settings: InfillSettings, base: InfillResult | None, *,
                should_stop: ShouldStop | None = None) -> InfillResult:
    """The model's own candidates (`base`, rescored) and each draft, raw and (with refine_below) refined,
    ranked together by the model's score of the text in place (scoring.py: all of them against one
    cached context where the model allows) plus retrieval_weight × the match."""
    t0 = time.perf_counter()
    drafts = offered(drafts, settings)
    if not drafts and base is not None:
        return base
    own = list(base.candidates) if base else []
    laid = [fit_to_file(d.text, source, span) for d in drafts]
    confs, forwards = score_fills(engine, source, [_fill(c) for c in own] + [(*span, t) for t in laid], settings)
    forwards += base.forwards if base else 0
    own = [replace(c, score=_mean_log(conf)) for c, conf in zip(own, confs)]
    drafted: list[Candidate] = []
    for i, (draft, text, conf) in enumerate(zip(drafts, laid, confs[len(own):])):
        if conf is None:
            continue
        cands, n = refine_draft(engine, source, span, draft, replace(settings, seed=settings.seed + i),
                                text=text, conf=conf, should_stop=should_stop)
        forwards += n
        drafted += cands
    hole_tokens = base.hole_tokens if base else ()
    elapsed = (base.elapsed_ms / 1e3 if base else 0.0)
    return finish("fill", source, _pooled(source, own, drafted), settings, forwards=forwards, t0=t0 - elapsed,
                  hole_tokens=hole_tokens)


def _fill(cand: Candidate) -> tuple[int, int, str]:
    edit = cand.edits[0]
    return edit.start, edit.end, edit.text


def _rescored(engine: Engine, source: str, cands: Sequence[Candidate],
              settings: InfillSettings) -> tuple[list[Candidate], int]:
    """The model's own candidates with the score drafts are ranked by (scoring.py), and the forwards that took."""
    confs, forwards = score_fills(engine, source, [_fill(c) for c in cands], settings)
    return [replace(c, score=_mean_log(conf)) for c, conf in zip(cands, confs)], forwards


def _pooled(source: str, own: Sequence[Candidate], drafted: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per resulting text: the same text from the model and from a draft keeps the draft's
    match (the higher score)."""
    pool: dict[str, Candidate] = {}
    for cand in (*own, *drafted):
        key = cand.apply(source)
        if key not in pool or cand.score > pool[key].score:
            pool[key] = cand
    return list(pool.values())


def refine_draft(engine: Engine, source: str, span: tuple[int, int], draft: Snippet, settings: InfillSettings,
                 *, text: str | None = None, conf: torch.Tensor | None = None,
                 should_stop: ShouldStop | None = None) -> tuple[list[Candidate], int]:
    """The draft as it is and as the model refines it: (candidates, forwards used). `text` and `conf`: the
    draft fitted to the file and its tokens' scores in place, when the caller has them already."""
    s, e = span
    forwards = 0
    if text is None:
        text = fit_to_file(draft.text, source, span)
    if conf is None:
        (conf,), forwards = score_fills(engine, source, [(s, e, text)], settings)
    if conf is None:
        return [], forwards
    tie = settings.retrieval_weight * draft.score
    raw = validated(source, [Edit(s, e, text)], _mean_log(conf) + tie, conf.numel(), settings)
    out = [replace(raw, reason=_note("draft", draft, raw.reason))]
    redo = _least_sure(conf, settings.refine_below)
    if redo.numel() == 0:
        return out, forwards
    den = engine.denoiser
    ids = engine.tokenizer.encode(model_text(text))
    layout = Layout.build(engine, source, [span], [len(ids)], settings)
    lo = len(layout.prefix_ids)
    batch = torch.tensor(layout.ids_with([ids]), device=den.device)[None]
    batch[0, lo + redo] = den.mask_id
    sampled = sample_layout(engine, batch, settings, None, should_stop, layout, [len(ids)])
    forwards += sampled.forwards
    new = sampled.ids[0, lo : lo + len(ids)].tolist()
    n = content_length(den, new)
    if n == 0:
        return out, forwards
    refined_text = fit_to_file(engine.tokenizer.decode(new[:n]), source, span)
    if refined_text == text:
        return out, forwards
    (rconf,), k = score_fills(engine, source, [(s, e, refined_text)], settings)
    if rconf is None:
        return out, forwards + k
    cand = validated(source, [Edit(s, e, refined_text)], _mean_log(rconf) + tie, rconf.numel(), settings)
    out.append(replace(cand, reason=_note("refined draft", draft, cand.reason)))
    return out, forwards + k


def _least_sure(conf: torch.Tensor, below_p: float | None) -> torch.Tensor:
    """Positions of the draft tokens to re-predict: under `below_p` (None: none), the least sure MAX_REMASK share."""
    if below_p is None:
        return conf.new_zeros(0, dtype=torch.long)
    below = (conf < below_p).nonzero().flatten()
    cap = max(1, int(MAX_REMASK * conf.numel()))
    return below[conf[below].argsort()[:cap]] if below.numel() > cap else below


def _mean_log(conf: torch.Tensor | None) -> float:
    """The mean log-probability of a text's tokens; -inf for a text with none (an empty fill)."""
    return -math.inf if conf is None else float(conf.clamp_min(1e-12).log().mean())


def _note(kind: str, draft: Snippet, reason: str) -> str:
    where = f"{kind} from {draft.path.name}:{draft.line + 1} (match {draft.score:.2f})"
    return f"{where}; {reason}" if reason else where

"""`complete` for models that only continue a prefix: block-diffusion models (SDAR, BD3LM) and
DiffusionGemma. Such a model never sees text after the cursor, so the suffix cannot bound the fill;
the hole's kind (syntax.hole_at_cursor) cuts the continuation where the hole ends instead.

A family declares this on its engine (`Engine.complete = complete_by_continuation`); its denoiser then
provides `continuation(prompt_ids, *, max_new_tokens, settings, seed, on_draft) -> ids` (cut before
the first end-of-text; it reads the InfillSettings that apply to it) and `bos_id`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch

from diffucode import infill, syntax
from diffucode.errors import ConfigError, GenerationCancelled, SpanError


class PrefixOnly:
    """The Denoiser protocol's fields for a model that only continues a prefix (its subclass adds
    `continuation`): no approximate cache, no expand/delete, and `logits` refuses with `refusal`."""

    cacheable = False
    expand_id = delete_id = None
    infill_frame = ((), ())

    def __init__(self, model, *, mask_id: int, pad_id: int | None, eos_ids: Iterable[int], bos_id: int | None,
                 vocab_size: int, forbidden_ids: Iterable[int], max_seq_len: int, refusal: str):
        self.model = model
        self.mask_id = mask_id
        self.pad_id = pad_id
        self.eos_ids = [int(e) for e in eos_ids]
        self.eos_id = self.eos_ids[0] if self.eos_ids else None
        self.bos_id = bos_id
        self.vocab_size = vocab_size
        self.forbidden_ids = frozenset(int(i) for i in forbidden_ids)
        self.max_seq_len = max_seq_len
        self.refusal = refusal

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def logits(self, ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        raise ConfigError(self.refusal)


def complete_by_continuation(engine, source: str, cursor: int, settings=None, *, on_step=None, should_stop=None):
    """`diffucode.infill.complete` for a model that continues a prefix (see the module docstring): the
    hole at the cursor as in infill.complete, the text before it as the prompt, the continuation cut
    where the hole's kind says it ends (`cut`), one candidate per seed."""
    settings = settings or infill.InfillSettings()
    settings.check()
    if not 0 <= cursor <= len(source):
        raise SpanError(f"cursor {cursor} is outside the text (length {len(source)})")
    den, tok = engine.denoiser, engine.tokenizer
    t0 = time.perf_counter()
    hole = syntax.hole_at_cursor(source, cursor, language=settings.language)
    new_tokens, prompt = prompt_ids(den, tok, source, hole, settings)
    forwards = 0

    def on_draft(step: int, draft: list[int]) -> None:  # draft: the ids generated so far, masks included
        nonlocal forwards
        forwards += 1
        if should_stop is not None and should_stop():
            raise GenerationCancelled("generation cancelled")
        if on_step is not None:
            on_step(infill.StepUpdate(forwards, 0, (tok.decode(draft),)))

    pooled: dict[str, infill.Candidate] = {}
    for c in range(settings.candidates):
        if should_stop is not None and should_stop():
            raise GenerationCancelled("generation cancelled")
        ids = den.continuation(prompt, max_new_tokens=new_tokens, settings=settings, seed=settings.seed + c,
                               on_draft=on_draft)
        text = fit(source, hole, tok.decode(ids))
        if text not in pooled:
            pooled[text] = _candidate(source, hole, text, len(ids), settings)
    return infill.finish("fill", source, pooled.values(), settings, forwards=forwards, t0=t0,
                         hole_tokens=(new_tokens,))


def prompt_ids(den, tok, source: str, hole, settings) -> tuple[int, list[int]]:
    """(new tokens, prompt ids): the hole kind's token budget, and the text before the hole that fits the
    context beside it (bos first, when the model has one)."""
    new_tokens = hole.token_budget(settings.max_new_tokens)
    room = min(settings.context_tokens or den.max_seq_len, den.max_seq_len) - new_tokens - 1
    if room < 1:
        raise SpanError(f"no room for a prompt in a {den.max_seq_len}-token context")
    prompt = tok.encode(source[: hole.start].replace("\r\n", "\n"))[-room:]
    if den.bos_id is not None:
        prompt = [den.bos_id, *prompt]
    return new_tokens, prompt


def fit(source: str, hole, text: str) -> str:
    """A decoded continuation as the hole's text: cut where the hole ends, in the source's line endings."""
    crlf = source.count("\r\n") > 0 and source.count("\r\n") * 2 >= source.count("\n")
    line_start = source.rfind("\n", 0, hole.start) + 1
    head = source[line_start: hole.start]
    text = cut(text, hole.kind, head, hole.max_lines)
    at_line_start = hole.start == 0 or source[hole.start - 1] == "\n"
    if text and at_line_start and hole.start == hole.end < len(source) and not text.endswith("\n"):
        text += "\n"  # a whole new line inserted before existing text keeps that text on its own line
    if crlf:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return text


def _candidate(source: str, hole, text: str, n_tokens: int, settings) -> infill.Candidate:
    """An infill.Candidate for `text` in the hole, validated when the settings ask for it."""
    valid, reason = True, "not validated"
    if settings.validate:
        v = syntax.validate_splice(source, hole.start, hole.end, text, language=settings.language)
        valid, reason = v.ok, ("" if v.ok else v.reason)
    return infill.Candidate((infill.Edit(hole.start, hole.end, text),), 0.0, valid, reason, n_tokens)


def cut(text: str, kind: str, head: str, max_lines: int | None) -> str:
    """The part of a free continuation that belongs in a hole of `kind` whose line starts with `head`:
    line_rest and expression end at the end of the line; statement and block_body at the first line
    indented less than the fill's first line (or than a block opened by `head`)."""
    if kind in ("line_rest", "expression"):
        return text.split("\n", 1)[0]
    lines = text.split("\n")
    first = next((ln for ln in lines if ln.strip()), "")
    if head.strip():  # a block opened on this line (`def f():|`): its body is indented deeper than the header
        base = len(head) - len(head.lstrip()) + 1
    else:  # a statement at the cursor's indentation: it ends where the code dedents below it
        base = len(head) + len(first) - len(first.lstrip())
    kept: list[str] = []
    for i, ln in enumerate(lines):
        if i > 0 and ln.strip() and len(ln) - len(ln.lstrip()) < base:
            break
        kept.append(ln)
    while kept and not kept[-1].strip() and len(kept) > 1:
        kept.pop()
    out = "\n".join(kept)
    if max_lines is not None:
        out = "\n".join(out.split("\n")[:max_lines])
    return out

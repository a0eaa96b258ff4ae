"""DiffusionGemma (google/diffusiongemma-26B-A4B-it; native in transformers >= 5.23).

Not a masked-diffusion model: an autoregressive encoder caches the prompt, and a bidirectional decoder
denoises a canvas of `canvas_length` *uniformly random* tokens (no mask token), accepting the
lowest-entropy tokens each step (entropy-bound sampler), renoising the rest, stopping when the
canvas is stable and confident; canvases are then appended left to right. It never sees text after
the canvas. So, in diffucode's terms:

* complete (prefix -> continuation) maps onto transformers' own `generate`: `complete_by_continuation`;
* infill and rewrite do not map (a hole with a suffix after it, re-masking tokens inside text): the
  denoiser's `logits` raises ConfigError with that reason, so those commands fail with exit 2.

Settings that map: max_new_tokens, steps (-> max_denoising_steps), seed, candidates. The rest
(strategy, temperature, top_k/top_p, threshold, block_length) belong to our masked sampler; the
checkpoint's generation_config.json (entropy bound, temperature schedule t_max -> t_min, adaptive
stopping) governs DiffusionGemma's sampler instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from diffucode.errors import ConfigError, GenerationCancelled, SpanError
from diffucode.families import hf

MIN_TRANSFORMERS = (5, 23)
CONTEXT_CAP = 8192  # prompt + new tokens we allow by default (the config's 131 k is a RoPE limit)
NOT_MASKED = (
    "DiffusionGemma denoises a canvas of random tokens after a prompt; it has no mask token and never sees "
    "text after the canvas, so infill and rewrite do not apply to it: use `diffucode complete` (continuation)"
)


class CanvasDenoiser:
    """DiffusionGemma behind the Denoiser protocol's fields; `logits` refuses, `continuation` generates."""

    def __init__(self, model, *, vocab_size: int, pad_id: int | None, eos_ids: list[int], bos_id: int | None,
                 forbidden_ids, max_seq_len: int):
        self.model = model
        self.mask_id = -1  # no mask token: masked sampling is refused in logits()
        self.pad_id = pad_id
        self.eos_id = eos_ids[0] if eos_ids else None
        self.eos_ids = eos_ids
        self.bos_id = bos_id
        self.vocab_size = vocab_size
        self.forbidden_ids = frozenset(forbidden_ids)
        self.max_seq_len = max_seq_len
        self.cacheable = False  # transformers' generate denoises its own canvases
        self.expand_id = self.delete_id = None
        self.infill_frame = ((), ())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def logits(self, ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        raise ConfigError(NOT_MASKED)

    @torch.inference_mode()
    def continuation(self, prompt_ids: list[int], *, max_new_tokens: int, steps: int | None = None, seed: int = 0,
                     on_draft: Callable[[int, list[int]], None] | None = None) -> list[int]:
        """Token ids generated after `prompt_ids` by transformers' `generate`, cut before the first EOS/pad.

        Args:
            prompt_ids: the prompt, special tokens (bos) included.
            max_new_tokens: generated length cap (whole canvases are denoised, then cut).
            steps: max denoising steps per canvas (None: the checkpoint's generation_config).
            seed: seeds torch's global RNG inside a forked RNG state (generate takes no generator).
            on_draft: called after every denoising step with (step, argmax draft ids); raise to cancel.
        """
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        kwargs = {"max_new_tokens": max_new_tokens}
        if steps is not None:
            kwargs["max_denoising_steps"] = int(steps)
        streamer = _DraftStreamer(on_draft) if on_draft is not None else None
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = self.model.generate(ids, streamer=streamer, **kwargs)
        seq = out.sequences if hasattr(out, "sequences") else out
        new = seq[0, len(prompt_ids):len(prompt_ids) + max_new_tokens].tolist()
        stops = set(self.eos_ids) | ({self.pad_id} if self.pad_id is not None else set())
        cut = next((i for i, t in enumerate(new) if t in stops), len(new))
        return new[:cut]


class _DraftStreamer:
    """transformers streamer interface: `put` gets committed canvases, `put_draft` every denoising step."""

    def __init__(self, on_draft):
        self.on_draft = on_draft
        self.steps = 0

    def put(self, value) -> None:
        pass

    def put_draft(self, value) -> None:
        self.steps += 1
        self.on_draft(self.steps, value[0].tolist())

    def end(self) -> None:
        pass


def load(folder: Path, config: dict, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
    """(denoiser, tokenizer, meta) for a DiffusionGemma folder."""
    tf = hf.transformers(MIN_TRANSFORMERS)
    tok = hf.load_tokenizer(folder, trust_remote_code=trust_remote_code)
    model = hf.hf_load(tf.DiffusionGemmaForBlockDiffusion, folder, config=None, device=device, dtype=dtype)
    gen = model.generation_config
    eos = gen.eos_token_id if gen.eos_token_id is not None else tok.tok.eos_token_id
    eos_ids = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]
    pad_id = gen.pad_token_id if gen.pad_token_id is not None else tok.tok.pad_token_id
    text = config.get("text_config") or {}
    max_pos = int(text.get("max_position_embeddings") or CONTEXT_CAP)
    den = CanvasDenoiser(model, vocab_size=tok.vocab_size, pad_id=pad_id, eos_ids=eos_ids,
                         bos_id=tok.tok.bos_token_id, forbidden_ids=tok.control_ids - set(eos_ids),
                         max_seq_len=min(max_pos, CONTEXT_CAP))
    meta = {"infill": {"pad_tail": False}, "attention": "canvas (bidirectional) over a causal prompt cache",
            "supports": ["complete"], "not_supported": {"infill": NOT_MASKED, "rewrite": NOT_MASKED},
            "canvas_length": config.get("canvas_length"),
            "chat": False}  # its chat template exists, but instruction rewrites need masks: not offered
    return den, tok, meta


# -- complete ---------------------------------------------------------------------------------------------
def complete_by_continuation(engine, source: str, cursor: int, settings=None, *, on_step=None, should_stop=None):
    """`diffucode.infill.complete` for models that only continue a prefix (engine.denoiser.continuation).

    The hole at the cursor comes from syntax.hole_at_cursor as in infill.complete; the model sees only
    the text before it. Its continuation is cut where the hole's kind says it ends: line_rest and
    expression at the end of the line, statement and block_body at the first line indented less
    than the text's first line (the model cannot see the suffix, so this cut replaces it).
    """
    from diffucode import infill, syntax

    settings = settings or infill.InfillSettings()
    settings.check()
    if not 0 <= cursor <= len(source):
        raise SpanError(f"cursor {cursor} is outside the text (length {len(source)})")
    den, tok = engine.denoiser, engine.tokenizer
    if not hasattr(den, "continuation"):
        raise ConfigError(f"{engine.name}: this model cannot continue a prefix")
    t0 = time.perf_counter()
    hole = syntax.hole_at_cursor(source, cursor, language=settings.language)
    new_tokens, prompt = _prompt(den, tok, source, hole, settings)

    forwards = 0

    def on_draft(step: int, draft: list[int]) -> None:  # draft: the current canvas's argmax ids
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
        ids = den.continuation(prompt, max_new_tokens=new_tokens, steps=settings.steps, seed=settings.seed + c,
                               on_draft=on_draft)
        text = _fit(source, hole, tok.decode(ids))
        if text not in pooled:
            pooled[text] = _candidate(source, hole, text, len(ids), settings)
    return infill.finish("fill", source, pooled.values(), settings, forwards=forwards, t0=t0,
                         hole_tokens=(new_tokens,))


def _prompt(den, tok, source: str, hole, settings) -> tuple[int, list[int]]:
    """(new tokens, prompt ids): the hole kind's token budget, and the text before the hole that fits the
    context beside it (bos first)."""
    new_tokens = hole.token_budget(settings.max_new_tokens)
    room = min(settings.context_tokens or den.max_seq_len, den.max_seq_len) - new_tokens - 1
    if room < 1:
        raise SpanError(f"no room for a prompt in a {den.max_seq_len}-token context")
    prompt = tok.encode(source[: hole.start].replace("\r\n", "\n"))[-room:]
    if den.bos_id is not None:
        prompt = [den.bos_id, *prompt]
    return new_tokens, prompt


def _fit(source: str, hole, text: str) -> str:
    """A decoded continuation as the hole's text: cut where the hole ends, in the source's line endings."""
    crlf = source.count("\r\n") > 0 and source.count("\r\n") * 2 >= source.count("\n")
    line_start = source.rfind("\n", 0, hole.start) + 1
    head = source[line_start: hole.start]
    text = _cut(text, hole.kind, head, hole.max_lines)
    at_line_start = hole.start == 0 or source[hole.start - 1] == "\n"
    if text and at_line_start and hole.start == hole.end < len(source) and not text.endswith("\n"):
        text += "\n"  # a whole new line inserted before existing text keeps that text on its own line
    if crlf:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return text


def _candidate(source: str, hole, text: str, n_tokens: int, settings):
    """An infill.Candidate for `text` in the hole, validated when the settings ask for it."""
    from diffucode import infill, syntax

    valid, reason = True, "not validated"
    if settings.validate:
        v = syntax.validate_splice(source, hole.start, hole.end, text, language=settings.language)
        valid, reason = v.ok, ("" if v.ok else v.reason)
    return infill.Candidate((infill.Edit(hole.start, hole.end, text),), 0.0, valid, reason, n_tokens)


def _cut(text: str, kind: str, head: str, max_lines: int | None) -> str:
    """The part of a free continuation that belongs in the hole (see complete_by_continuation)."""
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


COMPLETE = complete_by_continuation  # declared on the engine (engine.Engine.complete): infill.complete calls it

__all__ = ["CanvasDenoiser", "COMPLETE", "complete_by_continuation", "load", "NOT_MASKED"]

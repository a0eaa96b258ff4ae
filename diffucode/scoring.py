"""How sure the model is of a text in place: each of its tokens' pseudo-likelihood (the token's probability
when it alone of the text is masked, the context and the rest of the text visible). refine.py ranks the
model's own fills and the retrieved drafts of a hole by it.

Two ways to compute it, both PL_STRIDE rows per text (row r masks every PL_STRIDE-th token from r):

* exact: the text laid into the hole, full forwards (infill.pseudo_likelihood);
* cached, for a cacheable denoiser with `cache_refresh` above 1 and `exact` off: one prefill of the hole's
  layout with the hole all masked, shared by every text scored there, then one forward over the hole's
  positions only (every text's masked copies in one batch), the context's keys and values read from
  that prefill. It is the approximation
  CachedDenoiser makes while sampling: the context attended to a masked hole, not to the text. A model
  trained with pad tails scores a text in the hole it would fill that span with, the text followed by
  pads (as it was trained), so the texts of a span share one prefill; any other model, one prefill per
  text length.

With a one-layer model the context's keys and values depend on no other token, so both ways agree
exactly (tests/test_context.py checks this).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from diffucode.engine import Engine
from diffucode.infill import PL_STRIDE, Layout, model_text, pad_hole_length, pseudo_likelihood
from diffucode.settings import InfillSettings

Fill = tuple[int, int, str]  # (start, end, text): the text laid into source[start:end]
CHUNK = 32  # masked rows per cached forward: bounds the memory of many candidates


@torch.no_grad()  # not inference_mode: a compiled model's graphs guard on it (denoiser.py)
def score_fills(engine: Engine, source: str, fills: Sequence[Fill],
                settings: InfillSettings) -> tuple[list[torch.Tensor | None], int]:
    """Each fill's per-token probabilities in place, (n,) (None for a text with no tokens), and the forwards
    they took (cached: a prefill and a forward over the hole's positions for each group of texts). A
    text's score depends on the text, its span and the settings only, never on the other fills."""
    ids = [engine.tokenizer.encode(model_text(text)) for _, _, text in fills]
    den = engine.denoiser
    out: list[torch.Tensor | None] = [None] * len(fills)
    if not (den.cacheable and (settings.cache_refresh or 0) > 1 and not settings.exact):  # 1: no approximation
        forwards = 0
        for i, ((s, e, _), toks) in enumerate(zip(fills, ids)):
            if toks:
                out[i] = _exact(engine, source, (s, e), toks, settings)
                forwards += min(PL_STRIDE, len(toks))
        return out, forwards
    forwards = 0
    for (s, e, size), members in _groups(engine, source, fills, ids, settings).items():
        layout = Layout.build(engine, source, [(s, e)], [size], settings)
        lo = len(layout.prefix_ids)
        hole = torch.arange(lo, lo + size, device=den.device)
        masked = torch.tensor(layout.ids_with([[den.mask_id] * size]), device=den.device)[None]
        _, cache = den.prefill(masked, positions=hole[None, :1])  # the cache is what is wanted, not the logits
        rows = [layout.ids_with([ids[i] + [den.pad_id] * (size - len(ids[i]))]) for i in members]
        for i, p in zip(members, _cached(den, rows, cache, hole, [len(ids[i]) for i in members])):
            out[i] = p
        forwards += 2
    return out, forwards


def _groups(engine: Engine, source: str, fills: Sequence[Fill], ids: list[list[int]],
            settings: InfillSettings) -> dict[tuple[int, int, int], list[int]]:
    """The fills that share a prefill, keyed by (start, end, hole size). A pad-tail model scores a text in
    the hole it fills that span with (infill.pad_hole_length), ending in pads, or in a hole of the text's
    own length when the text is longer; any other model, in a hole of the text's length. Texts with no
    tokens are left out."""
    pad_size: dict[tuple[int, int], int] = {}  # per span: its old text is encoded once
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, ((s, e, _), toks) in enumerate(zip(fills, ids)):
        if not toks:
            continue
        size = len(toks)
        if engine.pad_tail:
            if (s, e) not in pad_size:
                old = len(engine.tokenizer.encode(model_text(source[s:e])))
                pad_size[s, e] = pad_hole_length(old, settings.max_new_tokens)
            size = max(size, pad_size[s, e])
        groups.setdefault((s, e, size), []).append(i)
    return groups


def _exact(engine: Engine, source: str, span: tuple[int, int], ids: list[int],
           settings: InfillSettings) -> torch.Tensor:
    den = engine.denoiser
    layout = Layout.build(engine, source, [span], [len(ids)], settings)
    row = torch.tensor(layout.ids_with([ids]), device=den.device)[None]
    lo = len(layout.prefix_ids)
    return pseudo_likelihood(den, row, torch.arange(lo, lo + len(ids), device=den.device))


def _cached(den, rows: list[list[int]], cache, hole: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
    """The pseudo-likelihood of the first n hole positions of each row (n from `lengths`): every row's
    PL_STRIDE masked copies, CHUNK rows per forward over the hole's positions against `cache`. (n,) each."""
    truth = [torch.tensor(row, device=hole.device) for row in rows]
    batch, asked, owner = [], [], []
    for j, n in enumerate(lengths):
        for r in range(min(PL_STRIDE, n)):
            at = torch.arange(r, n, min(PL_STRIDE, n), device=hole.device)  # indices into the hole
            masked = truth[j].clone()
            masked[hole[at]] = den.mask_id
            batch.append(masked)
            asked.append(at)
            owner.append(j)
    out = [torch.empty(n, device=hole.device) for n in lengths]
    for c in range(0, len(batch), CHUNK):
        part = range(c, min(c + CHUNK, len(batch)))
        width = max(len(asked[k]) for k in part)  # every row asks for as many positions: its last one repeated
        positions = torch.stack([torch.cat([asked[k], asked[k][-1:].expand(width - len(asked[k]))]) for k in part])
        logits = den.forward_cached(torch.stack([batch[k] for k in part]), cache, hole.expand(len(part), -1),
                                    positions=positions)  # (R, width, V)
        target = torch.stack([truth[owner[k]][hole] for k in part]).gather(1, positions)
        probs = torch.softmax(logits.float(), -1).gather(-1, target[..., None]).squeeze(-1)
        for row, k in enumerate(part):
            out[owner[k]][asked[k]] = probs[row, : len(asked[k])]
    return out

"""The forward process and the training objective: what is hidden, what the model must predict, how
each prediction is weighted. Pure numpy, so it runs in DataLoader workers; one call builds one batch.

Every row is T = seq_len tokens cut from ONE document (shards.py stores documents unseparated). Room
after a document's end is <|pad|>: the infill engine's convention for "end of text". Three row kinds,
mixed per batch by `p_uniform : p_infill : p_body`:

(a) uniform (MDLM, LLaDA): t ~ U(ε, 1), each token masked with probability t, cross-entropy on the
    masked tokens weighted 1/t. E[Σ weights] = T, so the row loss is the negative ELBO per token.
    Pads after a document's end are ordinary targets here: the model learns that after the end of the
    text come pads (the engine appends masks after a text and strips the pads it gets back).
(b) infill: one or two spans — random whole lines, or syntax spans from spans.py (statements, compound
    statements, blocks; expressions and conditions from syntax.node_spans; function bodies without
    their docstring) — each replaced by a hole of H ≥ span positions whose target is the span's
    tokens followed by <|pad|> up to H. A body hole here has code after it (the rest of the file):
    the engine fills a body in the middle of a file, not only at its end as in (c).
(c) body: a function's signature + docstring (and what precedes it) as the prefix, its body as a hole
    at the END of the row (an empty suffix: the engine's `complete`), target body + pads.

Why the holes look like this (what the prototype showed): it padded every span to
a bucket (8/16/32/48), so the hole size told the model the span's length range, and at inference a
32-mask hole always produced 17–32 tokens whatever the truth. Here a hole's size is drawn either
  * as span + U{0 … max_extra_pad} (the engine's holes are ≈ 1.5 × old length + 8), or
  * FIRST, from a fixed menu, and only then a span that fits (length ≤ H) is chosen, so that given H
    the span length follows its natural distribution truncated at H — nothing leaks;
and then the model must decide from the context where the content ends. Hole positions are masked
with probability t_h (t_h = 1, a fully masked hole, with probability p_hole_all_masked), and a
revealed pad reveals the pads after it, as the sampler commits pads only as a contiguous tail
(sampler.py). Loss on a hole: CE at its masked positions (content AND pad targets) weighted 1/t_h.
Each row's weights are normalised by its size (T for uniform rows, the holes' total for the others),
so every row weighs the same and the mixture probabilities are the shares of the loss. A body row whose
window holds no function body becomes an infill row (a uniform one when p_infill is 0), and an infill row
without a span in reach a uniform one, so the loss shares drift a little from the mixture's toward infill
and uniform rows (training's log reports the loss of each kind).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from diffucode.training.spans import SPAN_KINDS
from diffucode.training.token_store import TokenStore

UNIFORM, INFILL, BODY = 0, 1, 2
KIND_NAMES = ("uniform", "infill", "body")
# Kinds of syntax spans an infill hole may replace: spans.py's stored spans, then function bodies. Body
# spans are not stored as spans: they are the (body start, body end) of the stored function bodies,
# so data folders built before this kind existed have them too.
HOLE_SPAN_KINDS = (*SPAN_KINDS, "body")
BODY_SPAN = HOLE_SPAN_KINDS.index("body")


def _h(help: str, **kw):
    return field(metadata={"help": help}, **kw)


@dataclass(frozen=True)
class MaskingConfig:
    """The objective's knobs (one CLI flag per field; help text from the metadata)."""

    p_uniform: float = _h("share of rows with uniform masking (MDLM/LLaDA)", default=0.5)
    p_infill: float = _h("share of rows with infill holes (span + pads)", default=0.35)
    p_body: float = _h("share of rows with a function body as a hole at the end (signature+docstring prefix)",
                       default=0.15)
    eps: float = _h("smallest masking rate t; t ~ U(eps, 1) stratified over the batch", default=1e-3)
    p_syntax_span: float = _h("share of infill spans taken from syntax spans (else random whole lines)", default=0.6)
    span_kind_weights: str = _h("weights of syntax span kinds, name=weight,... "
                                "(body: a function body without its docstring)",
                                default="stmt=3,compound=1.5,block=1.5,expression=3,condition=1,body=1")
    p_single_line: float = _h("share of line spans that are one line (else 2..max_span_lines)", default=0.6)
    max_span_lines: int = _h("longest line span, in lines", default=8)
    max_span_tokens: int = _h("longest infill span, in tokens", default=128)
    max_body_tokens: int = _h("longest function body used as a hole, in tokens", default=256)
    max_extra_pad: int = _h("hole = span + U{0..max_extra_pad} pads (when not from the menu)", default=32)
    p_hole_menu: float = _h("share of holes whose size is drawn first from the menu, independent of the span",
                            default=0.4)
    hole_menu: tuple[int, ...] = _h("hole sizes of the menu", default=(8, 16, 24, 32, 48, 64, 96, 128))
    p_hole_all_masked: float = _h("share of holes fully masked (else masked at the row's rate t)", default=0.5)
    p_hole_at_end: float = _h("share of syntax-span holes placed at the end of the row (empty suffix)", default=0.2)
    p_second_hole: float = _h("share of infill rows with a second hole (a line span after the first)", default=0.15)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hole_menu"] = list(self.hole_menu)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MaskingConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "hole_menu" in d:
            d["hole_menu"] = tuple(int(x) for x in d["hole_menu"])
        return cls(**d)

    def kind_probs(self) -> np.ndarray:
        p = np.array([self.p_uniform, self.p_infill, self.p_body], dtype=np.float64)
        if (p < 0).any() or p.sum() <= 0:
            raise ValueError("mixture weights must be ≥ 0 and not all 0")
        return p / p.sum()

    def span_weights(self) -> np.ndarray:
        """(len(HOLE_SPAN_KINDS),) weights; a kind not named weighs 0."""
        w = np.zeros(len(HOLE_SPAN_KINDS))
        for part in filter(None, (x.strip() for x in self.span_kind_weights.split(","))):
            name, _, val = part.partition("=")
            if name.strip() not in HOLE_SPAN_KINDS:
                raise ValueError(f"unknown span kind {name!r}; choose from {', '.join(HOLE_SPAN_KINDS)}")
            w[HOLE_SPAN_KINDS.index(name.strip())] = float(val)
        return w


@dataclass
class Batch:
    """One micro-batch. Loss = Σ weights · CE(logits, targets) / rows."""

    ids: np.ndarray  # (B, T) int64 model input, masked positions hold mask_id
    targets: np.ndarray  # (B, T) int64 the clean tokens (pads in holes and after a document's end)
    weights: np.ndarray  # (B, T) float32, > 0 exactly where the loss is taken
    kind: np.ndarray  # (B,) int8: UNIFORM / INFILL / BODY
    t: np.ndarray  # (B,) float32 masking rate of the row (of its holes for infill/body rows)


@dataclass(frozen=True)
class Specials:
    mask: int
    pad: int


def low_discrepancy_t(n: int, rng: np.random.Generator, eps: float) -> np.ndarray:
    """(n,) masking rates: one uniform offset, n evenly spaced strata (MDLM), mapped into [eps, 1)."""
    u = (rng.random() + np.arange(n) / n) % 1.0
    return eps + (1.0 - eps) * u


# -- rows ---------------------------------------------------------------------------------------------
class RowBuilder:
    """Builds rows from one document's tokens; holds the token tables and the config."""

    def __init__(self, cfg: MaskingConfig, seq_len: int, ends_line: np.ndarray, specials: Specials):
        self.cfg = cfg
        self.T = seq_len
        self.ends_line = ends_line
        self.sp = specials
        self.menu = np.array(sorted(cfg.hole_menu), dtype=np.int64)
        self.span_w = cfg.span_weights()

    # lines ------------------------------------------------------------------------------------------
    def line_starts(self, d: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Sorted line-start positions q in [lo, hi] (q == 0, or the token before q ends a line),
        plus len(d) if it lies in the range (the end of a last line without a newline)."""
        hi = min(hi, len(d))
        q = lo + 1 + np.flatnonzero(self.ends_line[d[lo:hi]])
        q = q[q <= hi]
        if lo == 0 or (lo <= len(d) and self.ends_line[d[lo - 1]]):
            q = np.concatenate([[lo], q])
        if hi == len(d) and (len(q) == 0 or q[-1] != hi):
            q = np.concatenate([q, [hi]])
        return q

    def snap_back(self, d: np.ndarray, pos: int) -> int:
        """The last line start ≤ pos within T tokens (pos itself if none)."""
        if pos <= 0:
            return 0
        lo = max(0, pos - self.T)
        nl = np.flatnonzero(self.ends_line[d[lo:pos]])
        if len(nl):
            return lo + int(nl[-1]) + 1
        return 0 if lo == 0 else pos

    def snap_forward(self, d: np.ndarray, pos: int, limit: int) -> int:
        """The first line start in [pos, limit] (limit if none)."""
        if pos <= 0:
            return 0
        nl = np.flatnonzero(self.ends_line[d[pos - 1 : limit]])
        return pos + int(nl[0]) if len(nl) else limit

    # hole sizes -------------------------------------------------------------------------------------
    def menu_size(self, rng: np.random.Generator) -> int | None:
        """A hole size drawn from the menu BEFORE the span (None: use span + extra pads)."""
        if rng.random() < self.cfg.p_hole_menu:
            return int(rng.choice(self.menu))
        return None

    def extra_size(self, span_len: int, rng: np.random.Generator) -> int:
        return span_len + int(rng.integers(0, self.cfg.max_extra_pad + 1))

    # spans ------------------------------------------------------------------------------------------
    def line_span(self, d, p0: int, limit: int, rng) -> tuple[int, int] | None:
        """k whole lines (k = 1 with probability p_single_line, else 2..max_span_lines) starting in
        [p0, p0 + T), at most `limit` tokens; fewer lines if no k-line run fits."""
        ls = self.line_starts(d, p0, p0 + self.T)
        if len(ls) < 2:
            return None
        k = 1 if rng.random() < self.cfg.p_single_line else int(rng.integers(2, self.cfg.max_span_lines + 1))
        for k in range(min(k, len(ls) - 1), 0, -1):
            n = ls[k:] - ls[:-k]
            ok = np.flatnonzero((n > 0) & (n <= limit))
            if len(ok):
                i = int(ok[int(rng.integers(0, len(ok)))])
                return int(ls[i]), int(ls[i + k])
        return None

    def span_candidates(self, spans: np.ndarray, bodies: np.ndarray | None, p0: int, limit: int) -> np.ndarray:
        """(n, 3) syntax spans (start, end, kind in HOLE_SPAN_KINDS) starting in [p0, p0 + T), 1 to
        `limit` tokens long: the stored spans plus the function bodies as `body` spans (from the body
        start, which is after the docstring, to the function's end)."""
        parts = []
        if len(spans):
            lo, hi = np.searchsorted(spans[:, 0], [p0, p0 + self.T])
            parts.append(np.asarray(spans[lo:hi], dtype=np.int64))
        if bodies is not None and len(bodies) and self.span_w[BODY_SPAN] > 0:
            bd = np.asarray(bodies, dtype=np.int64)
            near = bd[(bd[:, 1] >= p0) & (bd[:, 1] < p0 + self.T)]
            parts.append(np.stack([near[:, 1], near[:, 2], np.full(len(near), BODY_SPAN)], 1))
        cand = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
        n = cand[:, 1] - cand[:, 0]
        return cand[(n >= 1) & (n <= limit)]

    def syntax_span(self, spans: np.ndarray, p0: int, limit: int, rng,
                    bodies: np.ndarray | None = None) -> tuple[int, int, int] | None:
        """A syntax span starting in [p0, p0 + T) of at most `limit` tokens (function `bodies` count as
        `body` spans): a kind first (weights over the kinds present), then a span of that kind uniformly."""
        cand = self.span_candidates(spans, bodies, p0, limit)
        if len(cand) == 0:
            return None
        present = np.bincount(cand[:, 2], minlength=len(self.span_w))[: len(self.span_w)] > 0
        w = self.span_w * present
        if w.sum() <= 0:
            return None
        kind = int(rng.choice(len(w), p=w / w.sum()))
        pick = cand[cand[:, 2] == kind]
        a, b, k = pick[int(rng.integers(0, len(pick)))]
        return int(a), int(b), int(k)

    # assembly ---------------------------------------------------------------------------------------
    def assemble(self, d: np.ndarray, s: int, holes: list[tuple[int, int, int]], *, end_at_hole: bool = False):
        """[d[s:a1]][hole1][d[b1:a2]][hole2]...[d[bk:...]] cut to T, pads after the document's end.

        holes: sorted, disjoint (a, b, H) with H ≥ b - a. Returns (tokens (T,), targets (T,),
        hole_mask (T,) bool) or None if the holes do not fit. With `end_at_hole` the row stops after
        the last hole (visible pads fill the rest: nothing follows the text there).
        """
        T, pad = self.T, self.sp.pad
        toks = np.full(T, pad, dtype=np.int64)
        hole = np.zeros(T, dtype=bool)
        pos, cur = 0, s
        for a, b, H in holes:
            n = a - cur
            if pos + n + H > T:
                return None
            toks[pos : pos + n] = d[cur:a]
            pos += n
            toks[pos : pos + (b - a)] = d[a:b]  # targets; pads after them are already in place
            hole[pos : pos + H] = True
            pos += H
            cur = b
        if not end_at_hole:
            n = min(T - pos, len(d) - cur)
            toks[pos : pos + n] = d[cur : cur + n]
        return toks, hole

    def hole_rates(self, t: float, rng) -> float:
        return 1.0 if rng.random() < self.cfg.p_hole_all_masked else t

    def mask_holes(self, toks: np.ndarray, hole: np.ndarray, t: float, rng):
        """Input ids and weights for a row whose holes are `hole`: each hole position masked with
        probability t; a revealed pad reveals the pads after it in its hole (the sampler's tail rule)."""
        reveal = (rng.random(self.T) >= t) & hole
        tail = hole & (toks == self.sp.pad)
        if tail.any():
            # Running "a pad was revealed" flag, reset at every hole start (holes are contiguous runs).
            start = hole & ~np.concatenate([[False], hole[:-1]])
            seg = np.cumsum(start)
            rv = (reveal & tail).astype(np.int64) * seg  # segment id where a pad is revealed
            closed = np.maximum.accumulate(rv) == seg
            reveal |= tail & closed
        masked = hole & ~reveal
        ids = np.where(masked, self.sp.mask, toks)
        w = masked.astype(np.float32) / (t * max(int(hole.sum()), 1))
        return ids, w

    def uniform(self, d: np.ndarray, s: int, t: float, rng):
        T = self.T
        toks = np.full(T, self.sp.pad, dtype=np.int64)
        n = min(T, len(d) - s)
        toks[:n] = d[s : s + n]
        masked = rng.random(T) < t
        ids = np.where(masked, self.sp.mask, toks)
        return ids, toks, masked.astype(np.float32) / (t * T)

    def infill(self, d, spans: np.ndarray, p0: int, t: float, rng, bodies: np.ndarray | None = None):
        """An infill row near p0, or None (then the caller falls back to a uniform row). `bodies`: the
        document's function bodies, candidates for `body` spans."""
        cfg = self.cfg
        H = self.menu_size(rng)
        want_syntax = rng.random() < cfg.p_syntax_span
        span, syntax = None, False
        for size in ([H, None] if H is not None else [None]):  # no span fits the menu size: span + extra pads
            limit = min(cfg.max_span_tokens, size or cfg.max_span_tokens)
            if want_syntax:
                got = self.syntax_span(spans, p0, limit, rng, bodies)
                if got is not None:
                    span, syntax = got[:2], True
            if span is None:
                span = self.line_span(d, p0, limit, rng)
            if span is not None:
                H = size
                break
        if span is None:
            return None
        a, b = span
        H = H if H is not None else self.extra_size(b - a, rng)
        holes = [(a, b, H)]
        if syntax and rng.random() < cfg.p_hole_at_end:
            s = max(0, a - (self.T - H))
            out = self.assemble(d, s, holes, end_at_hole=True)
        else:
            if rng.random() < cfg.p_second_hole:
                nxt = self.line_span(d, b + 1, cfg.max_span_tokens, rng) if b + 1 < len(d) else None
                if nxt is not None and nxt[0] > b:
                    holes.append((nxt[0], nxt[1], self.extra_size(nxt[1] - nxt[0], rng)))
            while True:
                fixed = sum(H for _, _, H in holes) + sum(holes[i + 1][0] - holes[i][1] for i in range(len(holes) - 1))
                room = min(a, self.T - fixed)
                if room >= 0 or len(holes) == 1:
                    break
                holes.pop()
            if room < 0:
                return None
            # Prefix length: skewed long (the engine spends ~3/4 of the context before the hole).
            P = int(room * math.sqrt(rng.random()))
            s = self.snap_forward(d, a - P, a)
            out = self.assemble(d, s, holes)
        if out is None:
            return None
        toks, hole = out
        ids, w = self.mask_holes(toks, hole, self.hole_rates(t, rng), rng)
        return ids, toks, w

    def body(self, d, bodies: np.ndarray, p0: int, t: float, rng):
        """A body row: [... signature + docstring][body + pads], the hole at the row's end."""
        cfg = self.cfg
        if len(bodies) == 0:
            return None
        H = self.menu_size(rng)
        n = bodies[:, 2] - bodies[:, 1]
        ok = np.flatnonzero((n >= 1) & (n <= min(cfg.max_body_tokens, self.T // 2, H or self.T)))
        if len(ok) == 0 and H is not None:  # no body fits the drawn size: span + extra pads instead
            H = None
            ok = np.flatnonzero((n >= 1) & (n <= min(cfg.max_body_tokens, self.T // 2)))
        if len(ok) == 0:
            return None
        near = ok[(bodies[ok, 1] >= p0) & (bodies[ok, 1] < p0 + self.T)]
        pick = near if len(near) else ok
        _, a, b = (int(x) for x in bodies[pick[int(rng.integers(0, len(pick)))]])
        H = H if H is not None else self.extra_size(b - a, rng)
        out = self.assemble(d, max(0, a - (self.T - H)), [(a, b, H)], end_at_hole=True)
        if out is None:
            return None
        toks, hole = out
        ids, w = self.mask_holes(toks, hole, self.hole_rates(t, rng), rng)
        return ids, toks, w


# -- batches ------------------------------------------------------------------------------------------
class BatchSource:
    """Deterministic batches: batch `index` depends only on (seed, index), never on worker count or
    order, so a resumed run reads exactly the rows an uninterrupted one would have.

    Windows: document d has ceil(len/T) windows per epoch; each epoch shuffles all windows
    (permutation seeded by (seed, epoch)) and jitters each window's start by up to ±T/2, snapped back
    to a line start (the engine's context windows are cut on line boundaries). Row r of the run is
    window perm_epoch[r mod N], epoch = r div N.
    """

    def __init__(self, store: TokenStore, cfg: MaskingConfig, seq_len: int, ends_line: np.ndarray,
                 specials: Specials, *, rows: int, seed: int = 0):
        self.store = store
        self.cfg = cfg
        self.T = seq_len
        self.rows = rows
        self.seed = seed
        self.builder = RowBuilder(cfg, seq_len, ends_line, specials)
        self.kind_p = cfg.kind_probs()
        counts = np.maximum(1, -(-store.doc_len // seq_len))
        self.win_doc = np.repeat(np.arange(len(counts)), counts)
        self.win_k = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
        self.n_windows = len(self.win_doc)
        self._perm: tuple[int, np.ndarray] | None = None

    def tokens_per_epoch(self) -> int:
        return self.n_windows * self.T

    def _epoch_perm(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, 1, epoch]).permutation(self.n_windows))
        return self._perm[1]

    def window(self, r: int, rng) -> tuple[int, int]:
        """(document, start) of global row r."""
        epoch, j = divmod(r, self.n_windows)
        w = int(self._epoch_perm(epoch)[j])
        doc, k = int(self.win_doc[w]), int(self.win_k[w])
        d = self.store.tokens(doc)
        nominal = k * self.T + int(rng.integers(-self.T // 2, self.T // 2 + 1))
        nominal = min(max(nominal, 0), max(len(d) - 1, 0))
        return doc, self.builder.snap_back(d, nominal)

    def batch(self, index: int) -> Batch:
        """Micro-batch `index` (rows index*rows … index*rows + rows - 1 of the run)."""
        rng = np.random.default_rng([self.seed, 2, index])
        B, T = self.rows, self.T
        ts = low_discrepancy_t(B, rng, self.cfg.eps)
        kinds = rng.choice(3, size=B, p=self.kind_p)
        ids = np.empty((B, T), np.int64)
        tg = np.empty((B, T), np.int64)
        w = np.empty((B, T), np.float32)
        t_out = ts.astype(np.float32)
        for i in range(B):
            doc, s = self.window(index * B + i, rng)
            d = self.store.tokens(doc)  # (n,) uint16 view; slices are widened as rows are filled
            row = None
            if kinds[i] == BODY:
                row = self.builder.body(d, self.store.bodies(doc), s, float(ts[i]), rng)
                if row is None:  # no function body in reach: an infill row, unless the mixture has none
                    kinds[i] = INFILL if self.kind_p[INFILL] > 0 else UNIFORM
            if kinds[i] == INFILL:
                row = self.builder.infill(d, self.store.spans(doc), s, float(ts[i]), rng, self.store.bodies(doc))
                if row is None:
                    kinds[i] = UNIFORM
            if kinds[i] == UNIFORM:
                row = self.builder.uniform(d, s, float(ts[i]), rng)
            ids[i], tg[i], w[i] = row
        return Batch(ids, tg, w, kinds.astype(np.int8), t_out)


# -- held-out rows (evaluation) -------------------------------------------------------------------------
def heldout_windows(store: TokenStore, seq_len: int, n: int, *, pad: int,
                    seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """(n, T) fixed held-out windows (full windows first; documents shorter than T padded) and the
    (n, T) bool mask of real tokens. Deterministic for a given store and seed."""
    rng = np.random.default_rng(seed)
    full, short = [], []
    for doc in range(len(store)):
        L = int(store.doc_len[doc])
        if L >= seq_len:
            full += [(doc, k * seq_len) for k in range(L // seq_len)]
        elif L > 0:
            short.append((doc, 0))
    order = [full[i] for i in rng.permutation(len(full))] + [short[i] for i in rng.permutation(len(short))]
    order = order[:n]
    toks = np.full((len(order), seq_len), pad, dtype=np.int64)
    for i, (doc, s) in enumerate(order):
        d = store.tokens(doc)[s : s + seq_len]
        toks[i, : len(d)] = d
    real = np.zeros_like(toks, dtype=bool)
    for i, (doc, s) in enumerate(order):
        real[i, : min(seq_len, int(store.doc_len[doc]) - s)] = True
    return toks, real

"""The objective (diffucode/training/masking.py): invariants of every row kind, on a synthetic token store."""

import numpy as np
import pytest

from diffucode.training.masking import (BODY, INFILL, UNIFORM, BatchSource, MaskingConfig, RowBuilder, Specials,
                                        heldout_windows, low_discrepancy_t)

MASK, PAD, NL = 0, 1, 5  # ids: <|mask|>, <|pad|>; token 5 ends a line; 6.. are words
V, T = 100, 128
SP = Specials(MASK, PAD)
ENDS = np.zeros(V, dtype=bool)
ENDS[NL] = True


class FakeStore:
    """Documents of random words in lines of 2..10 tokens, with statement spans and function bodies."""

    def __init__(self, n_docs=40, seed=0, short=False):
        rng = np.random.default_rng(seed)
        self.docs, self.sp, self.bd = [], [], []
        for _ in range(n_docs):
            lines = [np.append(rng.integers(6, V, rng.integers(2, 11)), NL)
                     for _ in range(rng.integers(3, 12) if short else rng.integers(20, 120))]
            starts = np.cumsum([0] + [len(x) for x in lines])
            self.docs.append(np.concatenate(lines).astype(np.uint16))
            spans = [(starts[i], starts[min(i + k, len(lines))], int(rng.integers(0, 3)))
                     for i in range(len(lines)) for k in (1, 2)]
            self.sp.append(np.array(sorted(spans), dtype=np.int32).reshape(-1, 3))
            bodies = [(starts[i], starts[i + 1], starts[min(i + 4, len(lines))]) for i in range(0, len(lines) - 2, 7)]
            self.bd.append(np.array(bodies, dtype=np.int32).reshape(-1, 3))
        self.doc_len = np.array([len(d) for d in self.docs])

    def __len__(self):
        return len(self.docs)

    def tokens(self, i):
        return self.docs[i]

    def spans(self, i):
        return self.sp[i]

    def bodies(self, i):
        return self.bd[i]


STORE = FakeStore()


def source(rows=64, seed=0, **cfg):
    return BatchSource(STORE, MaskingConfig(**cfg), T, ENDS, SP, rows=rows, seed=seed)


def holes_of(row_mask):
    """[(start, end)] runs of True."""
    idx = np.flatnonzero(np.diff(np.concatenate([[0], row_mask.astype(np.int8), [0]])))
    return list(zip(idx[::2], idx[1::2]))


def test_low_discrepancy_t_has_one_rate_per_stratum():
    t = low_discrepancy_t(64, np.random.default_rng(0), 1e-3)
    assert t.min() >= 1e-3 and t.max() < 1
    strata = np.floor((t - 1e-3) / (1 - 1e-3) * 64).astype(int)
    assert sorted(strata) == list(range(64))


def test_uniform_rows_weights_are_one_over_t_on_masked_tokens_only():
    b = source(p_uniform=1, p_infill=0, p_body=0).batch(3)
    assert (b.kind == UNIFORM).all()
    masked = b.ids == MASK
    assert ((b.weights > 0) == masked).all()
    np.testing.assert_allclose(b.weights[masked], np.broadcast_to(1 / (b.t[:, None] * T), b.ids.shape)[masked],
                               rtol=1e-6)
    assert (b.ids[~masked] == b.targets[~masked]).all()
    assert not (b.targets == MASK).any()
    # E[sum of weights] = 1 per row; the stratified t makes the batch mean tight
    assert abs(b.weights.sum(1).mean() - 1) < 0.15


def test_rows_after_a_document_end_are_pad_targets():
    store = FakeStore(n_docs=5, short=True)  # every document shorter than T
    b = BatchSource(store, MaskingConfig(p_uniform=1, p_infill=0, p_body=0), T, ENDS, SP, rows=16).batch(0)
    for row in b.targets:
        pads = np.flatnonzero(row == PAD)
        assert len(pads) and pads[0] + len(pads) == T  # a contiguous tail
    masked_pads = (b.ids == MASK) & (b.targets == PAD)
    assert (b.weights[masked_pads] > 0).all()  # the model learns pads after the end of the text


def check_infill_row(ids, tg, w, t_hole):
    """One fully masked hole per row: content then a contiguous tail of pads; loss exactly there."""
    hole = ids == MASK
    runs = holes_of(hole)
    assert len(runs) == 1
    a, b = runs[0]
    H = b - a
    content = tg[a:b] != PAD
    n = int(content.sum())
    assert n >= 1 and content[:n].all() and not content[n:].any()  # pads only as the hole's tail
    np.testing.assert_allclose(w[hole], 1 / (t_hole * H), rtol=1e-6)
    assert (w[~hole] == 0).all() and (ids[~hole] == tg[~hole]).all()
    return a, b, n


def test_infill_hole_is_span_plus_contiguous_pad_tail():
    b = source(p_uniform=0, p_infill=1, p_body=0, p_hole_all_masked=1, p_second_hole=0).batch(1)
    assert (b.kind == INFILL).all()
    for i in range(len(b.ids)):
        a, e, n = check_infill_row(b.ids[i], b.targets[i], b.weights[i], 1.0)
        assert b.targets[i, a + n - 1] == NL  # spans are whole lines/statements here


def test_hole_at_end_has_nothing_after_it():
    b = source(p_uniform=0, p_infill=1, p_body=0, p_hole_all_masked=1, p_second_hole=0, p_syntax_span=1,
               p_hole_at_end=1).batch(2)
    for i in range(len(b.ids)):
        a, e, n = check_infill_row(b.ids[i], b.targets[i], b.weights[i], 1.0)
        assert (b.targets[i, e:] == PAD).all()


def test_body_rows_put_the_body_at_the_end():
    b = source(p_uniform=0, p_infill=0, p_body=1, p_hole_all_masked=1).batch(4)
    assert (b.kind == BODY).sum() > len(b.kind) // 2
    for i in np.flatnonzero(b.kind == BODY):
        a, e, n = check_infill_row(b.ids[i], b.targets[i], b.weights[i], 1.0)
        assert (b.targets[i, e:] == PAD).all()


def test_a_kind_left_out_of_the_mixture_is_never_a_fallback():
    store = FakeStore(n_docs=40, seed=3)
    store.bd = [b if i % 2 else b[:0] for i, b in enumerate(store.bd)]  # half the documents have no function body
    both = BatchSource(store, MaskingConfig(p_uniform=0, p_infill=0.5, p_body=0.5), T, ENDS, SP, rows=64).batch(0)
    assert (both.kind == INFILL).sum() > 32  # body rows without a body fall back to infill rows
    kinds = np.concatenate([BatchSource(store, MaskingConfig(p_uniform=0.5, p_infill=0, p_body=0.5), T, ENDS, SP,
                                        rows=64).batch(i).kind for i in range(4)])
    assert (kinds == BODY).any() and (kinds == UNIFORM).sum() > 128 and not (kinds == INFILL).any()


def test_second_hole():
    b = source(rows=128, p_uniform=0, p_infill=1, p_body=0, p_hole_all_masked=1, p_second_hole=1,
               p_syntax_span=0).batch(5)
    two = 0
    for i in range(len(b.ids)):
        runs = holes_of(b.ids[i] == MASK)
        two += len(runs) == 2
        total = sum(e - a for a, e in runs)
        for a, e in runs:
            c = b.targets[i, a:e] != PAD
            n = int(c.sum())
            assert c[:n].all() and not c[n:].any()
        np.testing.assert_allclose(b.weights[i][b.ids[i] == MASK], 1 / total, rtol=1e-6)
    assert two > 64


def test_partial_holes_reveal_pads_only_as_a_closed_tail():
    rb = RowBuilder(MaskingConfig(), 32, ENDS, SP)
    toks = np.full(32, 7)
    hole = np.zeros(32, dtype=bool)
    hole[4:20] = True  # content 4..9, pads 10..19
    toks[10:20] = PAD
    hole[24:30] = True  # a second hole: all pads
    toks[24:30] = PAD
    for seed in range(200):
        ids, w = rb.mask_holes(toks, hole, 0.5, np.random.default_rng(seed))
        for a, e in ((4, 20), (24, 30)):
            revealed_pad = (ids[a:e] == PAD)
            if revealed_pad.any():
                first = a + int(np.argmax(revealed_pad))
                assert (ids[first:e] == PAD).all()  # the sampler's tail rule: no mask after a revealed pad
        assert ((w > 0) == (ids == MASK)).all() and not (ids[~hole] == MASK).any()


def collect(cfg_kw, n_batches=8):
    src = source(rows=128, p_uniform=0, p_infill=1, p_body=0, p_hole_all_masked=1, p_second_hole=0, **cfg_kw)
    H, n = [], []
    for k in range(n_batches):
        b = src.batch(k)
        for i in np.flatnonzero(b.kind == INFILL):
            a, e, c = check_infill_row(b.ids[i], b.targets[i], b.weights[i], 1.0)
            H.append(e - a)
            n.append(c)
    return np.array(H), np.array(n)


def test_menu_hole_size_is_drawn_independently_of_the_span():
    menu = (8, 16, 32, 64)
    H, n = collect(dict(p_hole_menu=1, hole_menu=menu))
    in_menu = np.isin(H, menu)
    assert in_menu.mean() > 0.97 and (n <= H).all()  # the rest: no span fitted an 8-hole (then span + pads)
    H, n = H[in_menu], n[in_menu]
    counts = np.array([(H == m).sum() for m in menu])
    assert counts.min() > 0.75 * len(H) / len(menu)  # uniform over the menu whatever the spans
    # Given the hole size, short spans stay common even in big holes (no "32 masks → 17-32 tokens" leak)
    assert (n[H == 64] <= 16).mean() > 0.3


def test_extra_pads_are_independent_of_the_span_length():
    H, n = collect(dict(p_hole_menu=0, max_extra_pad=32))
    pads = H - n
    assert pads.min() >= 0 and pads.max() <= 32
    assert abs(np.corrcoef(n, pads)[0, 1]) < 0.1
    short, long = pads[n <= np.median(n)], pads[n > np.median(n)]
    assert abs(short.mean() - long.mean()) < 3.0
    assert len(set(pads)) > 25  # the whole range 0..32 is used


def test_batches_are_deterministic():
    a, b = source(seed=3).batch(7), source(seed=3).batch(7)
    for f in ("ids", "targets", "weights", "kind", "t"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.ids, source(seed=3).batch(8).ids)


def test_epochs_cover_every_window():
    src = source(rows=1)
    docs = {src.window(r, np.random.default_rng(r))[0] for r in range(src.n_windows)}
    assert docs == set(range(len(STORE)))


def test_line_spans_are_whole_lines_with_a_real_tokenizer():
    import sysconfig
    from pathlib import Path

    from diffucode.training.vocab import token_tables
    from diffucode.tokenizer import Tokenizer

    text = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    tok = Tokenizer.train([text], vocab_size=300)
    _, ends = token_tables(tok)

    class One(FakeStore):
        def __init__(self):
            self.docs = [np.array(tok.encode(text), dtype=np.uint16)]
            self.sp = [np.zeros((0, 3), np.int32)]
            self.bd = [np.zeros((0, 3), np.int32)]
            self.doc_len = np.array([len(self.docs[0])])

    cfg = MaskingConfig(p_uniform=0, p_infill=1, p_body=0, p_hole_all_masked=1, p_second_hole=0, p_syntax_span=0)
    b = BatchSource(One(), cfg, 256, ends, Specials(tok.mask_id, tok.pad_id), rows=32).batch(0)
    for i in range(32):
        hole = np.flatnonzero(b.ids[i] == tok.mask_id)
        content = [x for x in b.targets[i, hole] if x != tok.pad_id]
        piece = tok.decode(content)
        before = tok.decode(b.targets[i, : hole[0]].tolist())
        assert piece.endswith("\n") or b.targets[i, hole[-1] + 1 :].tolist() == [tok.pad_id] * (255 - hole[-1])
        assert before == "" or before.endswith("\n")  # the hole starts at a line start
        assert piece in text


def test_heldout_windows_are_fixed():
    a, ra = heldout_windows(STORE, T, 10, pad=PAD)
    b, rb = heldout_windows(STORE, T, 10, pad=PAD)
    assert np.array_equal(a, b) and ra.all()
    with pytest.raises(ValueError):
        MaskingConfig(span_kind_weights="nonsense=1").span_weights()


def test_function_bodies_are_infill_spans_without_their_docstring():
    """`body` spans: a function's statements after its docstring, as a hole with code after it."""
    from diffucode.training.corpus import DataConfig
    from diffucode.training.spans import doc_spans
    from diffucode.training.vocab import token_tables
    from diffucode.tokenizer import Tokenizer

    body = "    total = a + b * {i}\n    if total > {i}:\n        total -= 1\n    return total\n"
    text = "".join(f'def func_{i}(a, b):\n    """Add b {i} times to a."""\n' + body.format(i=i)
                   + f"\n\nVALUE_{i} = func_{i}(1, 2)\n\n\n" for i in range(12))
    tok = Tokenizer.train([text], vocab_size=300)
    byte_len, ends = token_tables(tok)
    toks = np.array(tok.encode(text), dtype=np.int64)
    spans, bodies = doc_spans(text, toks, byte_len, DataConfig(spans="ast"))
    assert len(bodies) == 12

    class One(FakeStore):
        def __init__(self):
            self.docs, self.sp, self.bd = [toks.astype(np.uint16)], [spans.astype(np.int32)], [bodies.astype(np.int32)]
            self.doc_len = np.array([len(toks)])

    assert "body=1" in MaskingConfig().span_kind_weights  # on by default
    cfg = MaskingConfig(p_uniform=0, p_infill=1, p_body=0, p_syntax_span=1, span_kind_weights="body=1", p_hole_menu=0,
                        p_hole_at_end=0, p_second_hole=0, p_hole_all_masked=1)
    b = BatchSource(One(), cfg, 256, ends, Specials(tok.mask_id, tok.pad_id), rows=32).batch(0)
    assert (b.kind == INFILL).all()
    bodies_text = {body.format(i=i) for i in range(12)}
    found = 0
    for i in range(32):
        hole = np.flatnonzero(b.ids[i] == tok.mask_id)
        piece = tok.decode([x for x in b.targets[i, hole] if x != tok.pad_id])
        assert '"""' not in piece  # no hole takes a docstring
        # (a body ends at a token boundary: with the blank lines after it)
        if piece.rstrip("\n") + "\n" not in bodies_text:
            continue  # a window with no body starting in it: a line span instead
        found += 1
        before = tok.decode(b.targets[i, : hole[0]].tolist())
        assert before == "" or before.endswith('times to a."""\n')  # the docstring is context (if any is kept)
        assert "VALUE_" in tok.decode(b.targets[i, hole[-1] + 1 :].tolist())  # code after the hole
    assert found >= 24

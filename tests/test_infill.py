"""The infill API: splicing, coordinates, lengths, windows, streaming, cancellation."""

from dataclasses import replace

import pytest
import torch

from diffucode.errors import ConfigError, GenerationCancelled, SpanError
from diffucode.infill import (MASK_GLYPH, Candidate, Edit, InfillSettings, Layout, apply_edits, finish, infill,
                              rewrite)
from diffucode.testing import sample_tokenizer
from tests.scripted import scripted_engine

FAST = InfillSettings(validate=False, steps=4, max_new_tokens=12)

NASTY = [
    "def f(x):\n    return x\n\nprint(f(1))\n",
    "def f(x):\r\n    y = 1\r\n    return x\r\n",
    "def f(x):\n\tif x:\n\t\treturn '🎉 中文'\n\treturn None\n",
    "名前 = '日本語'  # 🎉\nx = 1\ny = 2",  # no trailing newline
    "x",
    "",
]


@pytest.mark.parametrize("src", NASTY)
@pytest.mark.parametrize("frac", [(0.0, 0.0), (0.3, 0.6), (1.0, 1.0), (0.0, 1.0)])
def test_text_outside_the_span_is_byte_identical(tiny_engine, src, frac):
    s, e = int(len(src) * frac[0]), int(len(src) * frac[1])
    res = infill(tiny_engine, src, [(s, e)],
                 InfillSettings(validate=False, steps=3, candidates=2, temperature=1.0, max_new_tokens=8))
    assert res.candidates
    for c in res.candidates:
        new = c.apply(src)
        (edit,) = c.edits
        assert (edit.start, edit.end) == (s, e)
        assert new[:s] == src[:s]
        assert new[s + len(edit.text) :] == src[e:]
        assert new.encode("utf-8")[: len(src[:s].encode())] == src[:s].encode()


def test_crlf_file_gets_crlf_text():
    tok = sample_tokenizer(512)
    eng = scripted_engine(tok, "    y = 2\n    z = 3\n")
    src = "def f(x):\r\n    y = 1\r\n    return x\r\n"
    s, e = src.index("    y"), src.index("    return")
    res = infill(eng, src, [(s, e)], FAST.__class__(validate=False, steps=8, max_new_tokens=24))
    assert res.best.edits[0].text == "    y = 2\r\n    z = 3\r\n"
    assert res.best.apply(src) == "def f(x):\r\n    y = 2\r\n    z = 3\r\n    return x\r\n"


def test_pad_tail_is_stripped_and_length_chosen_by_the_model():
    tok = sample_tokenizer(512)
    eng = scripted_engine(tok, "return x + 1\n", pad_tail=True)
    src = "def f(x):\n    pass\n"
    s = src.index("pass")
    res = infill(eng, src, [(s, len(src))], InfillSettings(validate=False, max_new_tokens=40))
    assert res.hole_tokens == (16,)  # one hole size, larger than the content
    assert res.best.edits[0].text == "return x + 1\n"
    assert res.best.n_tokens == len(tok.encode("return x + 1\n"))


def test_length_search_without_pad_training():
    tok = sample_tokenizer(512)
    eng = scripted_engine(tok, "a = 1\n", pad_tail=False)
    res = infill(eng, "x = 0\n\n", [(6, 6)], InfillSettings(validate=False, max_new_tokens=32))
    assert res.hole_tokens == (4, 8, 16, 32)
    assert any(c.edits[0].text.startswith("a = 1\n") for c in res.candidates)
    fixed = infill(eng, "x = 0\n\n", [(6, 6)],
                   InfillSettings(validate=False, length_mode="fixed", length=len(tok.encode("a = 1\n"))))
    assert fixed.hole_tokens == (len(tok.encode("a = 1\n")),)
    assert fixed.best.edits[0].text == "a = 1\n"


def test_several_holes_in_one_call():
    tok = sample_tokenizer(512)
    eng = scripted_engine(tok, "pass\n")
    src = "def a():\n    A\n\ndef b():\n    B\n"
    spans = [(src.index("B"), src.index("B") + 2), (src.index("A"), src.index("A") + 2)]
    res = infill(eng, src, spans, InfillSettings(validate=False, max_new_tokens=16))
    assert [e.start for e in res.best.edits] == sorted(s for s, _ in spans)
    assert res.best.apply(src) == "def a():\n    pass\n\ndef b():\n    pass\n"


@pytest.mark.parametrize("spans", [[(5, 2)], [(0, 99)], [(-1, 2)], [(0, 4), (3, 6)], []])
def test_bad_spans(tiny_engine, spans):
    with pytest.raises(SpanError):
        infill(tiny_engine, "abcdefgh", spans, FAST)


def test_bad_settings(tiny_engine):
    for s in [InfillSettings(steps=0), InfillSettings(strategy="x"), InfillSettings(length_mode="fixed"),
              InfillSettings(candidates=0), InfillSettings(candidates=100_000),
              InfillSettings(top_k=0), InfillSettings(top_p=7.0), InfillSettings(top_p=0.0),
              InfillSettings(block_length=0),
              InfillSettings(remask_below=5.0), InfillSettings(context_tokens=-10), InfillSettings(seed=2**70),
              InfillSettings(seed=-1), InfillSettings(search_lengths=(0, 8)), InfillSettings(search_lengths=()),
              InfillSettings(length=-3), InfillSettings(position_temperature=-1.0),
              InfillSettings(position_temperature=float("nan")), InfillSettings(cfg_scale=-2.0),
              InfillSettings(cfg_scale=float("inf"))]:
        with pytest.raises(ConfigError):
            infill(tiny_engine, "x = 1\n", [(0, 1)], s)


def test_window_cut_for_a_long_file(tiny_engine):
    lines = [f"value_{i} = compute({i}, 'x')  # line {i}\n" for i in range(5000)]
    src = "".join(lines)
    s = sum(map(len, lines[:2500]))
    e = s + len(lines[2500])
    layout = Layout.build(tiny_engine, src, [(s, e)], [16], InfillSettings())
    total = len(layout.prefix_ids) + 16 + len(layout.suffix_ids)
    max_len = tiny_engine.denoiser.max_seq_len
    assert max_len - 40 <= total <= max_len  # the context is used, and never exceeded
    tok = tiny_engine.tokenizer
    prefix_text, suffix_text = tok.decode(layout.prefix_ids), tok.decode(layout.suffix_ids)
    assert src[:s].endswith(prefix_text) and prefix_text.startswith("value_")  # whole lines
    assert src[e:].startswith(suffix_text) and suffix_text.endswith("\n")
    assert len(layout.prefix_ids) > len(layout.suffix_ids)  # most of the room before the hole
    res = infill(tiny_engine, src, [(s, e)],
                 InfillSettings(validate=False, steps=2, max_new_tokens=16, length_mode="fixed", length=16))
    new = res.candidates[0].apply(src)
    assert new[:s] == src[:s] and new.endswith(src[e:])


def test_streaming_and_cancellation(tiny_engine):
    updates = []
    infill(tiny_engine, "x = 1\ny = 2\n", [(6, 12)],
           InfillSettings(validate=False, steps=4, length_mode="fixed", length=8),
           on_step=updates.append)
    assert [u.forwards for u in updates] == [1, 2, 3, 4]
    assert MASK_GLYPH in updates[0].texts[0] and MASK_GLYPH not in updates[-1].texts[0]
    assert updates[-1].masked_left == 0
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(GenerationCancelled):
        infill(tiny_engine, "x = 1\ny = 2\n", [(6, 12)],
               InfillSettings(validate=False, steps=8, length_mode="fixed", length=8), should_stop=stop)
    assert len(calls) == 3  # stopped within one step of being asked


def test_rewrite_returns_changed_candidates_only(tiny_engine):
    src = "def f(x):\n    y = x * 2\n    return y\n"
    s, e = src.index("    y"), src.index("    return")
    res = rewrite(tiny_engine, src, (s, e), InfillSettings(validate=False, candidates=4, temperature=1.5, steps=3),
                  fraction=0.5)
    assert res.candidates
    for c in res.candidates:
        assert c.edits[0].text != src[s:e]
        new = c.apply(src)
        assert new.startswith(src[:s]) and new.endswith(src[e:])
    with pytest.raises(SpanError):
        rewrite(tiny_engine, src, (3, 3), InfillSettings())


def test_rewrite_keeps_confident_tokens():
    tok = sample_tokenizer(512)
    eng = scripted_engine(tok, "zzz")  # predicts 'zzz' tokens everywhere: the original tokens look unlikely
    src = "a = 1\nb = 2\n"
    res = rewrite(eng, src, (0, 6), InfillSettings(validate=False), fraction=0.34)
    n = len(tok.encode("a = 1\n"))
    assert res.candidates and res.hole_tokens == (n,)


def test_apply_edits_orders_by_start():
    from diffucode.infill import Edit

    assert apply_edits("abcdef", [Edit(4, 5, "X"), Edit(0, 1, "YY")]) == "YYbcdXf"


def test_invalid_candidates_get_remasked_and_denoised_again(tiny_engine):
    # A random model rarely writes valid Python: the remask pass must run and its candidates be labelled.
    src = "def f(x):\n    y = x + 1\n    return y\n"
    s, e = src.index("    y"), src.index("    return")
    res = infill(tiny_engine, src, [(s, e)],
                 InfillSettings(steps=2, candidates=2, temperature=1.0, length_mode="fixed", length=6, retries=0))
    assert res.n_invalid >= 1
    assert any("remasked" in c.reason for c in res.candidates)
    assert res.forwards == 2 + 2  # the first pass, then one remask pass


def test_retries_sample_fresh_rows_when_no_candidate_is_valid(tiny_engine):
    # A random model's greedy fill and its remask are invalid: `retries` rows are then sampled (at
    # RETRY_TEMPERATURE, so they differ from the greedy row), labelled, and counted in the forwards.
    src = "def f(x):\n    y = x + 1\n    return y\n"
    s, e = src.index("    y"), src.index("    return")
    st = InfillSettings(steps=2, length_mode="fixed", length=6)
    assert st.retries == 4  # the default
    plain = infill(tiny_engine, src, [(s, e)], replace(st, retries=0))
    assert plain.best is None and plain.forwards == 2 + 2  # greedy, then the remask pass
    res = infill(tiny_engine, src, [(s, e)], replace(st, retries=3))
    resampled = [c for c in res.candidates if "resampled" in c.reason]
    assert resampled and res.forwards == 2 + 2 + 2
    greedy = {c.apply(src) for c in plain.candidates}
    assert {c.apply(src) for c in resampled}.isdisjoint(greedy)  # one candidate per text
    assert infill(tiny_engine, src, [(s, e)], replace(st, retries=3)).candidates == res.candidates  # seeded
    with pytest.raises(ConfigError, match="retries"):
        infill(tiny_engine, src, [(s, e)], replace(st, retries=-1))


def test_a_blank_fill_that_would_be_refused_does_not_count_as_valid_for_retries():
    # A blank line for a line of code is syntax-valid but refused as destructive (guard.py): the retries
    # run for it as for an invalid fill (this scripted model writes the blank line again: still refused).
    tok = sample_tokenizer(512)
    eng = scripted_engine(tok, "\n")
    src = "def f(x):\n    y = 1\n    return x\n"
    s, e = src.index("    y"), src.index("    return")
    st = InfillSettings(steps=4, max_new_tokens=16)
    plain, retried = (infill(eng, src, [(s, e)], replace(st, retries=n)) for n in (0, 2))
    assert plain.best is None and plain.refused and retried.best is None and retried.refused
    assert retried.forwards > plain.forwards


def test_an_insertion_of_nothing_is_no_answer_retries_run_and_it_ranks_last():
    # A model that writes only pads at the cursor: the empty insertion is valid (it deletes nothing) but
    # answers nothing, so the retries run for it as for an invalid fill.
    eng = scripted_engine(sample_tokenizer(512), "")
    src = "def f(x):\n    y = 1\n    return x\n"
    at = src.index("    return")
    st = InfillSettings(steps=4, max_new_tokens=16)
    plain, retried = (infill(eng, src, [(at, at)], replace(st, retries=n)) for n in (0, 2))
    assert plain.best is not None and not plain.best.edits[0].text.strip()
    assert retried.forwards > plain.forwards  # the same blank again: pooled once
    blank = Candidate((Edit(at, at, "    \n"),), score=-0.1, valid=True)
    line = Candidate((Edit(at, at, "    y += 1\n"),), score=-2.0, valid=True)
    replaced = Candidate((Edit(at, at + 4, "    "),), score=-0.1, valid=True)  # not an insertion: ranked by score
    ranked = finish("fill", src, [blank, line, replaced], st, forwards=0, t0=0.0, hole_tokens=(16,)).candidates
    assert ranked == [replaced, line, blank]


def test_remask_and_retries_are_skipped_when_a_candidate_is_valid():
    tok = sample_tokenizer(512)
    eng = scripted_engine(tok, "    y = 2\n")
    src = "def f(x):\n    y = 1\n    return x\n"
    s, e = src.index("    y"), src.index("    return")
    res = infill(eng, src, [(s, e)], InfillSettings(steps=4, max_new_tokens=16, retries=4))
    assert res.best is not None and not any(x in c.reason for c in res.candidates for x in ("remasked", "resampled"))


def test_exact_is_the_reference_decoder_and_the_default_is_the_fast_path(tiny_engine):
    src = "def f(x):\n    y = x + 1\n    return y\n"
    span = (src.index("x + 1"), src.index("x + 1") + 5)
    assert InfillSettings().threshold == 0.9 and InfillSettings().cache_refresh == 4  # the fast path is the default
    st = dict(length_mode="fixed", length=8, steps=8, validate=False)
    exact = infill(tiny_engine, src, [span], InfillSettings(**st, exact=True))
    plain = infill(tiny_engine, src, [span], InfillSettings(**st, threshold=None, cache_refresh=None))
    assert [c.edits for c in exact.candidates] == [c.edits for c in plain.candidates]
    assert exact.forwards == plain.forwards == 8
    fast = infill(tiny_engine, src, [span], InfillSettings(**st, threshold=1e-9))  # everything is "confident"
    assert fast.forwards == 1


def test_position_temperature_and_cfg_scale_reach_the_sampler(tiny_engine, monkeypatch):
    import diffucode.infill as mod

    seen = []
    real = mod.sample
    monkeypatch.setattr(mod, "sample", lambda *a, **k: seen.append(k) or real(*a, **k))
    src = "def f(x):\n    y = x + 1\n    return y\n"
    span = (src.index("x + 1"), src.index("x + 1") + 5)
    st = dict(length_mode="fixed", length=6, steps=6, validate=False)
    infill(tiny_engine, src, [span], InfillSettings(**st))
    assert seen[-1]["position_temperature"] is None and seen[-1]["cfg_scale"] == 0.0 and seen[-1]["cfg_prompt"] is None
    a = infill(tiny_engine, src, [span], InfillSettings(**st, position_temperature=2.0, cfg_scale=0.5, seed=4))
    k = seen[-1]
    assert k["position_temperature"] == 2.0 and k["cfg_scale"] == 0.5
    prompt = k["cfg_prompt"]  # the context: every position outside the hole
    assert int((~prompt).sum()) == 6 and not prompt[len(tiny_engine.tokenizer.encode(src[: span[0]]))]
    b = infill(tiny_engine, src, [span], InfillSettings(**st, position_temperature=2.0, cfg_scale=0.5, seed=4))
    assert [c.edits for c in a.candidates] == [c.edits for c in b.candidates]  # the seed makes it reproducible
    rewrite(tiny_engine, src, span, InfillSettings(validate=False, steps=2, cfg_scale=1.0))
    assert int((~seen[-1]["cfg_prompt"]).sum()) == len(tiny_engine.tokenizer.encode(src[span[0]:span[1]]))


def test_int8_quantization_is_close_to_fp32(tiny_model_dir):
    from diffucode.loading import load_engine

    fp32, int8 = load_engine(tiny_model_dir), load_engine(tiny_model_dir, quantize="int8")
    assert any(type(m).__module__.startswith("torch.ao") for m in int8.denoiser.model.modules())
    ids = torch.randint(5, fp32.tokenizer.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    a, b = fp32.denoiser.logits(ids), int8.denoiser.logits(ids)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9
    assert infill(int8, "x = 1\n", [(4, 5)], InfillSettings(validate=False, length=3)).candidates
    with pytest.raises(ConfigError, match="quantization"):
        load_engine(tiny_model_dir, quantize="int4")


def test_quantize_auto_keeps_int8_only_where_it_measures_faster(tiny_model_dir, tmp_path, monkeypatch):
    from diffucode import loading
    from diffucode.loading import load_engine

    def quantized(engine):
        return any(type(m).__module__.startswith("torch.ao") for m in engine.denoiser.model.modules())

    real = load_engine(tiny_model_dir, quantize="auto")  # measured on this machine: either choice, recorded
    assert real.runtime["chosen_by"] == "auto" and real.runtime["int8_speedup"] > 0
    assert quantized(real) == (real.runtime["quantize"] == "int8") == (
        real.runtime["int8_speedup"] >= loading.AUTO_INT8_MIN_SPEEDUP)
    assert infill(real, "x = 1\n", [(4, 5)], InfillSettings(validate=False, length=3)).candidates

    fake = []  # best forward times in ms, as measured: the float model, then its int8 copy
    monkeypatch.setattr(loading, "_best_ms", lambda calls, repeats: [fake.pop(0), fake.pop(0)])
    for times, want in (([10.0, 5.0], "int8"), ([10.0, 9.5], "none")):
        fake[:] = times
        eng = load_engine(tiny_model_dir, quantize="auto")
        assert eng.runtime["quantize"] == want and quantized(eng) == (want == "int8") and not fake
        assert eng.runtime["int8_speedup"] == round(times[0] / times[1], 2)
    # A model whose context is shorter than the timed shape, in half precision: timed at its context,
    # and the float model it keeps is the one it was (int8 works on a float copy).
    from diffucode.testing import random_model

    short = random_model(tmp_path / "short", max_seq_len=12, dtype=torch.float16)
    fake[:] = [10.0, 9.5]
    eng = load_engine(short, quantize="auto", dtype="fp16")
    assert eng.runtime["quantize"] == "none" and next(eng.denoiser.model.parameters()).dtype == torch.float16
    # Without "auto" nothing is measured: runtime says what was asked.
    assert load_engine(tiny_model_dir).runtime == {"quantize": "none"}
    assert load_engine(tiny_model_dir, quantize="int8").runtime == {"quantize": "int8"}


def test_max_lines_keeps_the_first_lines_with_their_newline():
    from diffucode.infill import first_lines
    from diffucode.testing import sample_tokenizer
    from tests.scripted import scripted_engine

    assert first_lines("a = 1\r\nb = 2\n", 1) == "a = 1\r\n" and first_lines("a = 1", 1) == "a = 1"
    assert first_lines("a\nb\nc\n", 2) == "a\nb\n"
    src = "def f(x):\n    y = x + 1\n    return y\n"
    at = src.index("    return")
    engine = scripted_engine(sample_tokenizer(512), "    z = 1\n    w = 2\n")
    two = infill(engine, src, [(at, at)], InfillSettings(max_new_tokens=16))
    one = infill(engine, src, [(at, at)], InfillSettings(max_new_tokens=16, max_lines=1))
    assert two.best.edits[0].text == "    z = 1\n    w = 2\n" and one.best.edits[0].text == "    z = 1\n"
    with pytest.raises(ConfigError):
        InfillSettings(max_lines=0).check()

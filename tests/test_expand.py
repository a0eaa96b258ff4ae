"""Variable-length infill by expand/delete (DreamOn's rule): the sampler, and infill's length mode."""

from __future__ import annotations

import pytest
import torch

from diffucode import infill
from diffucode.errors import ConfigError, GenerationCancelled
from diffucode.expand import sample_expanding
from diffucode.engine import Engine
from diffucode.testing import sample_tokenizer

TOK = sample_tokenizer()


class ExpandingScript:
    """Writes `script` into the hole between a known prefix and suffix, adjusting the hole's length the
    DreamOn way: too short → the first mask predicts <|expand|>, too long → the last mask predicts the
    delete id; then each mask predicts its script token. The length decision is the most confident."""

    def __init__(self, script: list[int], prefix_len: int, suffix_len: int, *, stubborn: bool = False):
        self.script, self.P, self.S = script, prefix_len, suffix_len
        self.stubborn = stubborn  # always asks to expand (to test the limits)
        self.mask_id, self.pad_id, self.eos_id = TOK.mask_id, TOK.pad_id, TOK.eos_id
        self.expand_id, self.delete_id = TOK.expand_id, TOK.eos_id
        self.vocab_size = TOK.vocab_size
        self.forbidden_ids = frozenset({TOK.mask_id, TOK.bos_id, TOK.expand_id})
        self.max_seq_len = 512
        self.cacheable = False
        self.infill_frame = ((), ())
        self.device = torch.device("cpu")
        self.calls = 0

    def logits(self, ids, positions):
        self.calls += 1
        T = ids.size(1)
        hole = ids[0, self.P : T - self.S].tolist()
        masks = [i for i, t in enumerate(hole) if t == self.mask_id]
        out = torch.zeros(1, positions.size(1), self.vocab_size)
        for j, p in enumerate(positions[0].tolist()):
            i = p - self.P
            if self.stubborn or len(hole) < len(self.script):
                tok, conf = ((self.expand_id, 30.0) if i == masks[0]
                             else (self.script[min(i, len(self.script) - 1)], 5.0))
            elif len(hole) > len(self.script):
                tok, conf = ((self.delete_id, 30.0) if i == masks[-1]
                             else (self.script[min(i, len(self.script) - 1)], 5.0))
            else:
                tok, conf = self.script[i], 20.0 - 0.01 * i
            out[0, j, tok] = conf
        return out


def _run(script_text: str, initial: int, **kw):
    prefix, suffix = TOK.encode("def f(x):\n    y = "), TOK.encode("\n    return y\n")
    script = TOK.encode(script_text)
    den = ExpandingScript(script, len(prefix), len(suffix), stubborn=kw.pop("stubborn", False))
    kw.setdefault("strategy", "confidence")
    out = sample_expanding(den, prefix, suffix, expand_id=TOK.expand_id, delete_id=TOK.eos_id, initial=initial, **kw)
    return out, script, den


@pytest.mark.parametrize("initial", [1, 2, 4])
def test_a_short_hole_grows_to_the_length_the_model_asks_for(initial):
    out, script, den = _run("x * 2 + offset(x, 3)", initial, max_length=64)
    assert len(script) > 4
    assert out.ids == script
    assert out.expansions == len(script) - initial and out.deletions == 0
    assert out.forwards == den.calls == out.expansions + len(script)
    assert all(lp < 0 or lp == pytest.approx(0, abs=1e-3) for lp in out.logprobs) and len(out.logprobs) == len(script)


def test_a_long_hole_shrinks_by_deleting():
    out, script, _ = _run("x + 1", 12, max_length=64)
    assert out.ids == script
    assert out.deletions == 12 - len(script) and out.expansions == 0


def test_a_hole_can_shrink_to_nothing():
    prefix, suffix = TOK.encode("a = "), TOK.encode("\n")

    class DeleteAll(ExpandingScript):
        def logits(self, ids, positions):
            out = torch.zeros(1, positions.size(1), self.vocab_size)
            out[..., self.delete_id] = 10.0
            return out

    den = DeleteAll([], len(prefix), len(suffix))
    out = sample_expanding(den, prefix, suffix, expand_id=TOK.expand_id, delete_id=TOK.eos_id, initial=3)
    assert out.ids == [] and out.deletions == 3 and out.forwards == 3


def test_the_hole_never_grows_past_max_length_and_always_ends():
    out, _, den = _run("x", 2, max_length=6, stubborn=True)
    assert len(out.ids) == 6 and TOK.mask_id not in out.ids and TOK.expand_id not in out.ids
    assert out.expansions == 4
    out, _, den = _run("x", 2, max_length=64, stubborn=True, max_forwards=5)
    assert den.calls == 5 and TOK.mask_id not in out.ids and TOK.expand_id not in out.ids  # the last step fills all


def test_threshold_commits_several_per_forward():
    one, script, _ = _run("x * 2 + offset(x, 3)", len(TOK.encode("x * 2 + offset(x, 3)")))
    many, _, _ = _run("x * 2 + offset(x, 3)", len(script), threshold=0.9)
    assert one.ids == many.ids == script
    assert many.forwards == 1 < one.forwards


def test_position_temperature_draws_which_mask_to_commit():
    prefix, suffix = TOK.encode("a = "), TOK.encode("\n")
    script = TOK.encode("x * 2 + offset(x, 3)")

    class Graded(ExpandingScript):
        """The script at its own length, clearly surer to the left (so the ranking is left to right)."""

        def logits(self, ids, positions):
            out = torch.zeros(1, positions.size(1), self.vocab_size)
            for j, p in enumerate(positions[0].tolist()):
                out[0, j, self.script[p - self.P]] = 6.0 - 0.3 * (p - self.P)
            return out

    def order(**kw):
        seen = []  # after each step, the first mask left: the commit order shows in it
        out = sample_expanding(Graded(script, len(prefix), len(suffix)), prefix, suffix, expand_id=TOK.expand_id,
                               delete_id=TOK.eos_id, initial=len(script), strategy="confidence",
                               callback=lambda _, hole: seen.append(
                                   hole.index(TOK.mask_id) if TOK.mask_id in hole else -1),
                               **kw)
        assert out.ids == script  # every mask still filled with the model's token
        return tuple(seen)

    ranked = order()
    assert order(position_temperature=1e-9, generator=torch.Generator().manual_seed(0)) == ranked
    drawn = {order(position_temperature=1e3, generator=torch.Generator().manual_seed(s)) for s in range(5)}
    assert len(drawn) > 1 and ranked not in drawn
    assert order(position_temperature=1e3, generator=torch.Generator().manual_seed(2)) in drawn  # reproducible
    with pytest.raises(ConfigError):
        order(position_temperature=-1.0)


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError):
        _run("x", 0)
    with pytest.raises(ConfigError):
        _run("x", 8, max_length=4)
    with pytest.raises(ConfigError):
        _run("x", 2, strategy="nope")


def test_callback_sees_the_hole_change_and_can_cancel():
    seen = []
    out, script, _ = _run("x * 2 + offset(x, 3)", 2, callback=lambda n, hole: seen.append(len(hole)))
    assert seen[0] == 3 and seen[-1] == len(script) and seen == sorted(seen)

    def stop(n, hole):
        raise GenerationCancelled("stop")

    with pytest.raises(GenerationCancelled):
        _run("x", 2, callback=stop)


# -- through the infill API ----------------------------------------------------------------------------
SRC = "def f(x):\n    y = 1\n    return y\n"


def _engine(script_text: str, source: str, span: tuple[int, int]) -> Engine:
    prefix, suffix = TOK.encode(source[: span[0]]), TOK.encode(source[span[1] :])
    den = ExpandingScript(TOK.encode(script_text), len(prefix), len(suffix))
    return Engine(den, TOK, name="expanding", meta={"infill": {"pad_tail": False}})


def test_infill_auto_length_uses_expansion_when_the_model_has_the_tokens():
    span = (SRC.index("1"), SRC.index("1") + 1)
    eng = _engine("x * 2 + offset(x, 3)", SRC, span)
    steps = []
    res = infill.infill(eng, SRC, [span], infill.InfillSettings(strategy="confidence"), on_step=steps.append)
    assert res.best is not None
    assert res.best.apply(SRC) == "def f(x):\n    y = x * 2 + offset(x, 3)\n    return y\n"
    assert res.forwards == eng.denoiser.calls and steps[-1].masked_left == 0 and "\u2591" in steps[0].texts[0]
    assert res.hole_tokens == (4,)  # started from 4 masks, grew to the script's length


def test_expand_mode_needs_the_tokens_and_one_span(tiny_engine):
    with pytest.raises(ConfigError, match="expand"):
        infill.infill(tiny_engine, SRC, [(0, 3)], infill.InfillSettings(length_mode="expand"))
    eng = _engine("x", SRC, (0, 3))
    with pytest.raises(ConfigError, match="one span"):
        infill.infill(eng, SRC, [(0, 3), (10, 12)], infill.InfillSettings(length_mode="expand"))
    # auto with several spans falls back to the length search instead of refusing
    res = infill.infill(eng, SRC, [(0, 3), (10, 12)], infill.InfillSettings(validate=False, max_new_tokens=4))
    assert len(res.hole_tokens) > 1  # several hole lengths tried: the search, not expansion


def test_expand_infill_cancels_between_steps():
    span = (SRC.index("1"), SRC.index("1") + 1)
    eng = _engine("x * 2 + offset(x, 3)", SRC, span)
    with pytest.raises(GenerationCancelled):
        infill.infill(eng, SRC, [span], infill.InfillSettings(), should_stop=lambda: eng.denoiser.calls >= 2)
    assert eng.denoiser.calls == 2

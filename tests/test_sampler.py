"""The reverse process with a mock denoiser: no weights, deterministic logits."""

import pytest
import torch

from diffucode.errors import ConfigError
from diffucode.sampler import STRATEGIES, sample

MASK, PAD, EOS, V = 0, 1, 2, 12


class MockDenoiser:
    """Logits are a fixed function of (position, token count so far) with a wider head than the vocab."""

    mask_id, pad_id, eos_id = MASK, PAD, EOS
    vocab_size = 10  # logits have 12 columns: ids 10 and 11 must never be sampled
    forbidden_ids = frozenset({MASK, 3})
    max_seq_len = 64
    device = torch.device("cpu")
    cacheable, expand_id, delete_id, infill_frame = False, None, None, ((), ())

    def __init__(self, bias=None):
        self.calls = 0
        self.bias = bias or {}

    def logits(self, ids, positions=None):
        self.calls += 1
        B, T = ids.shape
        g = torch.Generator().manual_seed(1000 + int((ids != MASK).sum()))
        logits = torch.randn(B, T, V, generator=g) * 3
        logits[..., 10:] = 50.0  # the widest logits are out of vocabulary
        logits[..., 3] = 40.0  # a forbidden special
        for tok, val in self.bias.items():
            logits[..., tok] += val
        if positions is not None:
            logits = logits.gather(1, positions[..., None].expand(-1, -1, V))
        return logits


def _ids(rows=2):
    return torch.tensor([[5, 6, MASK, MASK, MASK, MASK, 7, MASK, MASK, MASK, 8, 9]] * rows)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_fills_every_mask_and_keeps_context(strategy, temperature):
    ids = _ids()
    out = sample(MockDenoiser(), ids, steps=4, strategy=strategy, temperature=temperature,
                 generator=torch.Generator().manual_seed(0))
    assert not (out.ids == MASK).any()
    ctx = ids != MASK
    assert torch.equal(out.ids[ctx], ids[ctx])
    assert torch.equal(out.generated, ~ctx)
    gen = out.ids[~ctx]
    assert (gen < 10).all(), "ids past the tokenizer's vocabulary were sampled"
    assert not torch.isin(gen, torch.tensor([MASK, 3])).any(), "a forbidden special was emitted"


def test_committed_tokens_never_change_without_remasking():
    seen = []
    sample(MockDenoiser(), _ids(), steps=6, callback=lambda step, ids, still: seen.append((ids.clone(), still.clone())))
    for (prev, prev_masked), (cur, _) in zip(seen, seen[1:]):
        committed = ~prev_masked
        assert torch.equal(prev[committed], cur[committed])


def test_remasking_can_change_committed_tokens_and_terminates():
    changed = []
    prev = {}

    def cb(step, ids, still):
        if "ids" in prev:
            was_committed = ~prev["still"]
            changed.append(bool((still & was_committed).any()))
        prev.update(ids=ids.clone(), still=still.clone())

    out = sample(MockDenoiser(), _ids(), steps=7, remask_below=0.9, callback=cb)
    assert not (out.ids == MASK).any()
    assert any(changed), "remasking never put a committed token back"
    assert out.forwards <= 7 + 7  # each position is re-masked at most once


def test_deterministic_with_seed():
    kw = dict(steps=3, temperature=0.8, strategy="origin")
    a = sample(MockDenoiser(), _ids(), generator=torch.Generator().manual_seed(7), **kw)
    b = sample(MockDenoiser(), _ids(), generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.logprobs, b.logprobs)
    c = sample(MockDenoiser(), _ids(), generator=torch.Generator().manual_seed(8), **kw)
    assert not torch.equal(a.ids, c.ids)


def test_schedule_uses_the_given_number_of_forwards():
    den = MockDenoiser()
    out = sample(den, _ids(), steps=3)
    assert out.forwards == den.calls == 3
    assert sample(MockDenoiser(), _ids(), steps=100).forwards == 7  # capped at the number of masks


def test_threshold_mode_commits_at_least_one_per_step():
    counts = []
    last = [int((_ids()[0] == MASK).sum())]

    def cb(step, ids, still):
        left = int(still[0].sum())
        counts.append(last[0] - left)
        last[0] = left

    out = sample(MockDenoiser(), _ids(), steps=100, threshold=0.999999, callback=cb)
    assert all(c >= 1 for c in counts)
    assert out.forwards == 7  # nothing is that confident: exactly one per step
    easy = sample(MockDenoiser(bias={4: 100.0}), _ids(), steps=1, threshold=0.9)
    assert easy.forwards == 1  # everything confident: all in one forward


def test_the_step_schedule_is_a_floor_under_threshold_and_entropy_modes():
    for kw in (dict(threshold=0.999999), dict(entropy_bound=0.0)):
        assert sample(MockDenoiser(), _ids(), steps=3, **kw).forwards == 3  # never more forwards than steps
        assert sample(MockDenoiser(), _ids(), steps=100, **kw).forwards == 7


def test_entropy_bound_accepts_the_lowest_entropy_positions_within_the_bound():
    from diffucode.sampler import _entropy_bounded

    inf = float("inf")
    ent = torch.tensor([[0.5, 0.1, 2.0, 0.3, inf], [3.0, inf, inf, inf, inf]])
    got = _entropy_bounded(ent, 0.5)
    # row 0: sorted 0.1, 0.3, 0.5, 2.0 -> sums less the max: 0, 0.1, 0.4, 0.9 -> the first three
    assert got.tolist() == [[True, True, False, True, False], [True, False, False, False, False]]
    assert _entropy_bounded(ent, 0.0).sum(1).tolist() == [1, 1]  # the single lowest always fits
    sharp = MockDenoiser(bias={4: 100.0})
    assert sample(sharp, _ids(), steps=100, entropy_bound=0.01).forwards == 1  # all near-zero entropy
    assert sample(MockDenoiser(), _ids(), steps=100, entropy_bound=1e-6).forwards == 7


def test_early_stop_commits_everything_once_predictions_repeat_confidently():
    class Steady(MockDenoiser):
        """The same confident predictions every forward (logits do not depend on the context)."""

        def logits(self, ids, positions=None):
            self.calls += 1
            B, T = ids.shape
            logits = torch.zeros(B, T, V)
            logits[..., 4] = 10.0
            logits[..., 5] = 9.0 - torch.arange(T, dtype=torch.float32)[None, :] * 0.01  # confidence ~0.73
            return logits if positions is None else logits.gather(1, positions[..., None].expand(-1, -1, V))

    den = Steady()
    assert sample(den, _ids(), steps=100).forwards == 7
    out = sample(den, _ids(), steps=100, early_stop=0.5)
    assert out.forwards == 2 and not (out.ids == MASK).any()  # forward 2 repeats forward 1: stop
    assert sample(den, _ids(), steps=100, early_stop=0.9).forwards == 7  # not confident enough to stop


def test_blocks_fill_left_to_right():
    order = []

    def cb(step, ids, still):
        order.append(still[0].clone())

    sample(MockDenoiser(), _ids(1), steps=7, block_length=3)
    sample(MockDenoiser(), _ids(1), steps=7, block_length=3, callback=cb)
    gen_positions = [2, 3, 4, 5, 7, 8, 9]
    blocks = [gen_positions[i : i + 3] for i in range(0, 7, 3)]
    for still in order:
        for b, later in zip(blocks, blocks[1:]):
            if not all(still[p] for p in later):  # something in a later block is committed ...
                assert not any(still[p] for p in b)  # ... only once the earlier block is done


def test_tail_ids_form_a_contiguous_tail_in_each_hole():
    for seed in range(20):
        out = sample(MockDenoiser(bias={PAD: 2.5}), _ids(3), steps=3, temperature=1.0, tail_ids=[PAD, EOS],
                     generator=torch.Generator().manual_seed(seed))
        for row in out.ids.tolist():
            for hole in (row[2:6], row[7:10]):
                tail_start = next((i for i, t in enumerate(hole) if t in (PAD, EOS)), len(hole))
                assert all(t in (PAD, EOS) for t in hole[tail_start:]), hole


def test_logprobs_only_on_generated_positions():
    out = sample(MockDenoiser(), _ids(), steps=4)
    assert (out.logprobs[~out.generated] == 0).all()
    assert (out.logprobs[out.generated] <= 0).all()


def test_no_masks_is_a_no_op():
    ids = torch.tensor([[5, 6, 7]])
    out = sample(MockDenoiser(), ids, steps=3)
    assert torch.equal(out.ids, ids) and out.forwards == 0


@pytest.mark.parametrize("kw", [dict(steps=0), dict(steps=2, strategy="nope"), dict(steps=2, temperature=-1),
                                dict(steps=2, threshold=1.5), dict(steps=2, block_length=0),
                                dict(steps=2, entropy_bound=-1.0), dict(steps=2, early_stop=0.0)])
def test_bad_settings_raise_config_error(kw):
    with pytest.raises(ConfigError):
        sample(MockDenoiser(), _ids(), **kw)


# -- position temperature (Dream's alg_temp) ------------------------------------------------------------
def _commit_steps(ids=None, **kw):
    """The output and, per row, the step at which each generated position was committed."""
    ids = _ids(1) if ids is None else ids
    steps_at = torch.zeros_like(ids)
    prev = [ids == MASK]

    def cb(step, cur, still):
        steps_at[prev[0] & ~still] = step
        prev[0] = still.clone()

    out = sample(MockDenoiser(), ids, callback=cb, **kw)
    return out, steps_at


@pytest.mark.parametrize("strategy", ["confidence", "margin", "entropy"])
def test_position_temperature_near_zero_is_the_ranking(strategy):
    kw = dict(steps=7, strategy=strategy)  # argmax tokens: the position draws use the only randomness
    ranked, order = _commit_steps(generator=torch.Generator().manual_seed(3), **kw)
    for t in (0.0, 1e-9, 1e-320):  # 1e-320 overflows score / t: ranked by score, the limit
        out, got = _commit_steps(generator=torch.Generator().manual_seed(3), position_temperature=t, **kw)
        assert torch.equal(out.ids, ranked.ids) and torch.equal(got, order), t


def test_position_temperature_samples_the_order_reproducibly_and_fills_every_mask():
    orders = set()
    for seed in range(8):
        out, order = _commit_steps(steps=7, position_temperature=100.0, generator=torch.Generator().manual_seed(seed))
        assert not (out.ids == MASK).any() and out.forwards == 7  # the schedule still sets how many per step
        again, same = _commit_steps(steps=7, position_temperature=100.0, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(again.ids, out.ids) and torch.equal(same, order)
        orders.add(tuple(order[0].tolist()))
    assert len(orders) > 4, "a large position temperature should give varied commit orders"
    out = sample(MockDenoiser(), _ids(), steps=3, position_temperature=100.0,
                 generator=torch.Generator().manual_seed(0))
    assert out.forwards == 3 and not (out.ids == MASK).any()


def test_position_temperature_keeps_blocks_and_tails():
    out, order = _commit_steps(steps=7, block_length=3, position_temperature=50.0,
                               generator=torch.Generator().manual_seed(1))
    first, second, third = order[0, [2, 3, 4]], order[0, [5, 7, 8]], order[0, [9]]
    assert first.max() < second.min() and second.max() < third.min()
    for seed in range(10):
        out = sample(MockDenoiser(bias={PAD: 2.5}), _ids(3), steps=3, temperature=1.0, tail_ids=[PAD, EOS],
                     position_temperature=5.0, generator=torch.Generator().manual_seed(seed))
        for row in out.ids.tolist():
            for hole in (row[2:6], row[7:10]):
                tail_start = next((i for i, t in enumerate(hole) if t in (PAD, EOS)), len(hole))
                assert all(t in (PAD, EOS) for t in hole[tail_start:]), hole


def test_pick_positions_draws_from_the_softmax_of_the_scores():
    from diffucode.sampler import pick_positions

    score = torch.tensor([[0.0, 1.0, 2.0, float("-inf")]]).repeat(6000, 1)
    picked = pick_positions(score, torch.ones(6000, dtype=torch.long), temperature=1.0,
                            generator=torch.Generator().manual_seed(0))
    assert (picked.sum(1) == 1).all() and not picked[:, 3].any()  # −inf (not eligible) is never drawn
    freq = picked.float().mean(0)[:3]
    assert torch.allclose(freq, torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0), atol=0.03)
    two = pick_positions(score[:5], torch.full((5,), 3), temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert (two[:, :3].all(1)).all() and not two[:, 3].any()  # without replacement: k = all eligible


@pytest.mark.parametrize("kw", [dict(position_temperature=-1.0), dict(position_temperature=float("nan")),
                                dict(position_temperature=float("inf")), dict(cfg_scale=-0.5),
                                dict(cfg_scale=float("nan"))])
def test_bad_position_temperature_and_cfg_scale(kw):
    with pytest.raises(ConfigError):
        sample(MockDenoiser(), _ids(), steps=2, **kw)


# -- classifier-free guidance (LLaDA's cfg_scale) ---------------------------------------------------------
class RowDenoiser(MockDenoiser):
    """Logits that are a fixed function of each row alone (so a doubled batch changes nothing per row)."""

    def logits(self, ids, positions=None):
        self.calls += 1
        self.seen = getattr(self, "seen", []) + [ids.clone()]
        w = torch.linspace(-1, 1, V * 13).view(13, V)
        emb = w[ids]  # (B, T, V): token identity
        mix = emb.cumsum(1) * 0.7 + emb.flip(1).cumsum(1).flip(1) * 0.3  # each position sees the whole row
        logits = mix * 4
        return logits if positions is None else logits.gather(1, positions[..., None].expand(-1, -1, V))


def test_cfg_scale_zero_is_the_plain_model_and_positive_is_the_formula():
    ids = _ids()
    plain = sample(RowDenoiser(), ids, steps=4, temperature=0.5, generator=torch.Generator().manual_seed(0))
    zero = sample(RowDenoiser(), ids, steps=4, temperature=0.5, cfg_scale=0.0,
                  generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain.ids, zero.ids) and torch.equal(plain.logprobs, zero.logprobs)

    from diffucode.guidance import guided_logits

    den = RowDenoiser()
    pos = torch.tensor([[2, 3, 4, 5, 7, 8, 9]]).expand(2, -1)
    prompt = ids != MASK
    got = guided_logits(den, ids, pos, prompt=prompt, cfg_scale=1.5)
    cond, un = den.logits(ids, pos), den.logits(ids.masked_fill(prompt, MASK), pos)
    assert torch.allclose(got, un + 2.5 * (cond - un))
    den = RowDenoiser()
    out = sample(den, ids, steps=7, cfg_scale=1.5)
    first = den.seen[0]
    assert first.shape == (4, 12) and torch.equal(first[:2], ids)
    assert (first[2:] == MASK).all()  # the unconditional rows: the prompt (every non-mask) masked
    assert not (out.ids == MASK).any()
    later = den.seen[1]  # committed tokens stay in the unconditional rows; only the prompt is masked
    assert torch.equal(later[2:][:, ids[0] == MASK], later[:2][:, ids[0] == MASK])
    assert (later[2:][:, ids[0] != MASK] == MASK).all()


@pytest.mark.parametrize("schedule", ["even", "linear", "rounded"])
def test_schedules_commit_every_mask_and_a_committed_mask_id_cannot_loop_forever(schedule):
    out = sample(MockDenoiser(), _ids(), steps=3, schedule=schedule)
    assert not (out.ids == MASK).any() and out.forwards <= 3 + 1  # rounded may skip steps, linear may commit none
    stuck = sample(MockDenoiser(bias={MASK: 100.0}), _ids(), steps=3, schedule=schedule, allow_ids=[MASK])
    assert (stuck.ids == MASK).any() and stuck.forwards <= 3 + 7  # the mask id kept its positions open: bounded


def test_remask_re_predicts_and_refuses_what_it_cannot_honour():
    out = sample(MockDenoiser(), _ids(), steps=4, schedule="remask")
    assert not (out.ids == MASK).any() and out.forwards == 4
    with pytest.raises(ConfigError, match="remask"):
        sample(MockDenoiser(), _ids(), steps=4, schedule="remask", block_length=2)
    with pytest.raises(ConfigError, match="unknown schedule"):
        sample(MockDenoiser(), _ids(), steps=4, schedule="cosine")

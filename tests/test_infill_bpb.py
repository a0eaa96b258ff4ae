"""evals/infill_bpb.py: bits per byte of infill tasks' right fills in the hole the model would fill."""

import math

import pytest
import torch

from diffucode.infill import Layout, model_text, pad_hole_length
from diffucode.settings import InfillSettings
from diffucode_evals.data import Task
from diffucode_evals.infill_bpb import hole_mask, infill_bits_per_byte, task_row

BODY = ["    total = 0\n", "    for x in values:\n", "        total += x * x\n", "    return total / len(values)\n"]


def tasks(n_copies: int = 1) -> list[Task]:
    """Single-line tasks over a small function (one per line of its body), `n_copies` times with other names."""
    out = []
    for c in range(n_copies):
        head = f"def mean_square_{c}(values):\n    \"\"\"The mean of the squares.\"\"\"\n"
        for i, line in enumerate(BODY):
            out.append(Task(task_id=f"T/{c}/L{i}", kind="infill", prompt=head + "".join(BODY[:i]),
                            canonical_solution=line, suffix="".join(BODY[i + 1:]), test="", entry_point="f"))
    return out


def test_the_row_is_the_infill_layout_with_the_fill_and_a_pad_tail_in_the_hole(tiny_pad_engine):
    settings = InfillSettings()
    task = tasks()[2]
    ids, hole, content = task_row(tiny_pad_engine, task, settings)
    fill = tiny_pad_engine.tokenizer.encode(model_text(task.canonical_solution))
    assert content == len(fill)
    size = pad_hole_length(0, settings.max_new_tokens)
    assert size > len(fill)
    at = len(task.prompt)
    layout = Layout.build(tiny_pad_engine, task.prompt + task.suffix, [(at, at)], [size], settings)
    pad = tiny_pad_engine.denoiser.pad_id
    assert ids == layout.ids_with([fill + [pad] * (size - len(fill))])
    assert (hole.start, hole.stop) == (len(layout.prefix_ids), len(layout.prefix_ids) + size)


def test_a_model_without_pad_tails_is_measured_in_a_hole_of_the_fills_length(tiny_engine):
    task = tasks()[3]
    ids, hole, content = task_row(tiny_engine, task, InfillSettings())
    assert ids[hole] == tiny_engine.tokenizer.encode(model_text(task.canonical_solution))
    assert content == hole.stop - hole.start


def test_only_the_hole_is_masked_and_uniform_logits_cost_log2_v_bits_a_token(tiny_pad_engine, monkeypatch):
    den = tiny_pad_engine.denoiser
    seen = []

    def uniform(ids, positions=None):  # records what the model is shown; every token equally likely
        seen.append(ids.clone())
        return torch.zeros(*ids.shape, den.vocab_size)

    monkeypatch.setattr(den, "logits", uniform)
    ts = tasks(8)
    settings = InfillSettings()
    rows = [task_row(tiny_pad_engine, t, settings) for t in ts]
    bpb = infill_bits_per_byte(tiny_pad_engine, ts, micro=64)
    shown = [r for batch in seen for r in batch.tolist()]
    masked_somewhere = set()
    for r in shown:
        ids, hole, _ = next(row for row in rows if len(row[0]) == len(r)
                            and all(a == b or a == den.mask_id for a, b in zip(r, row[0])))
        at = [j for j, x in enumerate(r) if x == den.mask_id]
        assert all(hole.start <= j < hole.stop for j in at)  # the context is never masked
        masked_somewhere.update(at)
    assert masked_somewhere
    # The 1/t weights count every content token once in expectation; pad j of a tail is masked only with
    # the j pads before it (probability t^(j+1)), which the weights count E[t^j] = 1/(j+1) times.
    counted = sum(content + sum(1 / (j + 1) for j in range(h.stop - h.start - content)) for _, h, content in rows)
    n_bytes = sum(len(t.canonical_solution.encode()) for t in ts)
    expected = math.log2(den.vocab_size) * counted / n_bytes
    assert 0.8 * expected < bpb < 1.2 * expected


def test_a_revealed_pad_reveals_the_tail_after_it():
    gen = torch.Generator().manual_seed(0)
    hole, content = slice(3, 13), 4  # 4 content tokens, then 6 pads
    for t in (0.3, 0.6, 0.9):
        for _ in range(50):
            m = hole_mask(16, hole, content, t, gen)
            assert not m[:3].any() and not m[13:].any()
            pads = m[3 + content : 13].tolist()
            assert pads == sorted(pads, reverse=True)  # masked pads form a prefix of the tail: no mask after a pad
    assert hole_mask(16, hole, content, 1.0, gen)[hole].all()


def test_the_measure_is_repeatable_and_independent_of_batching(tiny_pad_engine):
    ts = tasks(3)
    a = infill_bits_per_byte(tiny_pad_engine, ts)
    assert a == pytest.approx(infill_bits_per_byte(tiny_pad_engine, ts, micro=1), rel=1e-5)
    assert a != pytest.approx(infill_bits_per_byte(tiny_pad_engine, ts, seed=7), rel=1e-6)  # the masks are drawn
    with pytest.raises(ValueError):
        infill_bits_per_byte(tiny_pad_engine, [])

"""pass@k against hand-computed values (Chen et al. 2021)."""

import math

import pytest

from diffucode_evals.metrics import aggregate_pass_at_k, count_by_task, pass_at_k


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (10, 0, 1, 0.0),
        (10, 0, 10, 0.0),
        (5, 2, 1, 2 / 5),  # pass@1 is the fraction correct
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (4, 1, 4, 1.0),  # n - c < k: every draw of 4 contains the correct one
        (10, 10, 1, 1.0),
        (20, 1, 10, 0.5),  # 1 - C(19,10)/C(20,10) = 1 - 10/20
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_exact_binomials_for_large_n():
    for n, c, k in [(200, 37, 100), (200, 1, 1), (1000, 3, 100), (150, 149, 10)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n, c, k", [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_rejects_bad_input(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_count_and_aggregate():
    records = [
        {"task_id": "a", "passed": True},
        {"task_id": "a", "passed": False},
        {"task_id": "b", "passed": False},
        {"task_id": "b", "passed": False},
        {"task_id": "c", "passed": True, "base_passed": True},
        {"task_id": "c", "passed": True, "base_passed": None},
    ]
    counts = count_by_task(records)
    assert counts == {"a": (2, 1), "b": (2, 0), "c": (2, 2)}
    agg = aggregate_pass_at_k(counts, [1, 2, 3])
    assert agg["pass@1"]["value"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert agg["pass@2"]["value"] == pytest.approx((1 + 0 + 1) / 3)
    assert agg["pass@3"] == {"value": None, "tasks": 0}  # no task has 3 samples
    assert count_by_task(records, "base_passed") == {"c": (1, 1)}

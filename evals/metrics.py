"""pass@k: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code").

For one task with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the chance that at least
one of k samples drawn without replacement passes. The binomials overflow for large n, so it is computed
as the product 1 - prod_{i=n-c+1}^{n} (1 - k / i), which is the same number (paper, Figure 3).
A benchmark's pass@k is the mean over its tasks.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with ``n`` samples, ``c`` of them correct."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every draw of k samples contains a correct one
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def count_by_task(records: Iterable[Mapping], key: str = "passed") -> dict[str, tuple[int, int]]:
    """{task_id: (n, c)} from per-sample records with ``task_id`` and a boolean ``key``.
    Records where ``key`` is missing or None are not counted."""
    n: dict[str, int] = defaultdict(int)
    c: dict[str, int] = defaultdict(int)
    for r in records:
        value = r.get(key)
        if value is None:
            continue
        n[r["task_id"]] += 1
        c[r["task_id"]] += bool(value)
    return {t: (n[t], c[t]) for t in n}


def aggregate_pass_at_k(counts: Mapping[str, tuple[int, int]], ks: Sequence[int]) -> dict[str, dict]:
    """Mean pass@k over the tasks that have at least k samples, for each k.

    Returns {"pass@k": {"value": mean or None, "tasks": how many tasks it averages}}.
    """
    out: dict[str, dict] = {}
    for k in ks:
        values = [pass_at_k(n, c, k) for n, c in counts.values() if n >= k]
        out[f"pass@{k}"] = {
            "value": sum(values) / len(values) if values else None,
            "tasks": len(values),
        }
    return out


__all__ = ["aggregate_pass_at_k", "count_by_task", "pass_at_k"]

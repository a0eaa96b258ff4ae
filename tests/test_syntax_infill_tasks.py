"""Eval task generators: the official single-line infilling set, rebuilt exactly; syntax-span tasks."""

from __future__ import annotations

from collections import Counter

import pytest
from diffucode_evals.infill_tasks import read_jsonl, single_line_tasks, syntax_tasks

from diffucode.errors import ConfigError

from tests.benchdata import DATA
HUMANEVAL = DATA / "human-eval" / "HumanEval.jsonl.gz"
SINGLE_LINE = DATA / "human-eval-infilling" / "HumanEval-SingleLineInfilling.jsonl.gz"
FIELDS = ["task_id", "entry_point", "prompt", "suffix", "canonical_solution", "test"]

PROBLEM = {
    "task_id": "Toy/0",
    "entry_point": "add",
    "prompt": 'def add(a, b):\n    """Add."""\n',
    "canonical_solution": "    if a:\n        return a + b\n\n    return b\n",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
}


@pytest.fixture(scope="module")
def problems():
    if not HUMANEVAL.exists():
        pytest.skip(f"HumanEval data not found at {HUMANEVAL} (expected ../shared/data next to the repo)")
    return read_jsonl(HUMANEVAL)


def test_single_line_rule_on_a_toy_problem():
    tasks = single_line_tasks([PROBLEM])
    assert [t["task_id"] for t in tasks] == ["SingleLineInfilling/Toy/0/L0", "SingleLineInfilling/Toy/0/L1",
                                            "SingleLineInfilling/Toy/0/L3"]  # the blank line 2 is skipped
    first, second, last = tasks
    assert list(first) == FIELDS
    assert first["prompt"] == PROBLEM["prompt"] + "\n"  # the official set's extra newline for L0
    assert first["canonical_solution"] == "    if a:\n"
    assert second["prompt"] == PROBLEM["prompt"] + "    if a:\n"
    assert second["suffix"] == "\n    return b\n"
    assert last["canonical_solution"] == "    return b\n" and last["suffix"] == ""


def test_single_line_tasks_match_the_official_set(problems):
    if not SINGLE_LINE.exists():
        pytest.skip(f"HumanEval-SingleLineInfilling not found at {SINGLE_LINE}")
    official = read_jsonl(SINGLE_LINE)
    ours = single_line_tasks(problems)
    assert len(ours) == len(official) == 1033
    for mine, theirs in zip(ours, official):
        assert list(mine) == list(theirs) == FIELDS
        for field in FIELDS:
            assert mine[field] == theirs[field], (theirs["task_id"], field)


def test_syntax_tasks_on_a_toy_problem():
    tasks = syntax_tasks([PROBLEM])
    by_kind = Counter(t["task_id"].split("/")[1] for t in tasks)
    assert by_kind == {"expression": 3, "statement": 2, "block": 1, "body": 1}
    full = PROBLEM["prompt"] + PROBLEM["canonical_solution"]
    for task in tasks:
        assert list(task) == FIELDS
        assert task["prompt"] + task["canonical_solution"] + task["suffix"] == full
        assert len(task["prompt"]) >= len(PROBLEM["prompt"])  # the middle lies in the solution
    body = next(t for t in tasks if t["task_id"] == "SyntaxInfill/body/Toy/0/0")
    assert body["canonical_solution"] == PROBLEM["canonical_solution"]
    block = next(t for t in tasks if t["task_id"] == "SyntaxInfill/block/Toy/0/0")
    assert block["canonical_solution"] == "        return a + b\n"
    expressions = [t["canonical_solution"] for t in tasks if "/expression/" in t["task_id"]]
    assert expressions == ["a", "a + b", "b"]  # the condition, the returned sum, the returned name
    statements = [t["canonical_solution"] for t in tasks if "/statement/" in t["task_id"]]
    assert statements == ["        return a + b\n", "    return b\n"]
    with pytest.raises(ConfigError):
        syntax_tasks([PROBLEM], kinds=("paragraph",))


def test_syntax_tasks_on_humaneval(problems):
    tasks = syntax_tasks(problems)
    first_five = [t for t in tasks if int(t["task_id"].split("/")[3]) < 5]
    assert syntax_tasks(problems[:5]) == first_five  # deterministic and ordered kind > problem > span
    ids = [t["task_id"] for t in tasks]
    assert len(ids) == len(set(ids))
    kinds = Counter(i.split("/")[1] for i in ids)
    assert set(kinds) == {"expression", "statement", "block", "body"}
    assert kinds["body"] >= 164  # every function body, helpers included
    by_id = {p["task_id"]: p for p in problems}
    for task in tasks:
        problem = by_id[task["task_id"].split("/", 2)[2].rsplit("/", 1)[0]]
        assert task["prompt"] + task["canonical_solution"] + task["suffix"] == \
            problem["prompt"] + problem["canonical_solution"]
        assert task["prompt"].startswith(problem["prompt"])
        assert task["canonical_solution"].strip()
    only = syntax_tasks(problems[:3], kinds=("statement",))
    assert only and all("/statement/" in t["task_id"] for t in only)

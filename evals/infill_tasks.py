"""Infill task generators derived from HumanEval problems.

`single_line_tasks` rebuilds the official HumanEval-SingleLineInfilling set (Bavarian et al. 2022,
openai/human-eval-infilling; 1,033 tasks) from the 164 HumanEval problems, field for field. The rule,
inferred from the released file and verified against all 1,033 tasks:

    lines = canonical_solution.split("\\n")
    for every i with lines[i].strip() != "":
        task_id            = f"SingleLineInfilling/{task_id}/L{i}"
        prompt             = prompt + "\\n".join(lines[:i]) + "\\n"
        canonical_solution = lines[i] + "\\n"
        suffix             = "\\n".join(lines[i + 1:])

The line index `i` counts every line of the solution (blank ones included), and blank or
whitespace-only lines are never masked. A quirk of the join: for i == 0 the prompt gains one extra
"\\n" (a blank line between the docstring and the masked first line), which the released set keeps
(160 of 164 problems have a task L0; the other 4 start their solution with a blank line).

`syntax_tasks` builds the same kind of task from syntax-node spans of prompt + canonical_solution
(diffucode.syntax.node_spans), restricted to spans inside the solution, so that infill quality can be
measured per syntactic kind. Both generators are pure and deterministic.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from diffucode.errors import ConfigError
from diffucode.syntax import node_spans

__all__ = ["single_line_tasks", "syntax_tasks", "read_jsonl", "SYNTAX_TASK_KINDS"]

# Task kind -> the node-span kinds it draws from.
SYNTAX_TASK_KINDS: dict[str, tuple[str, ...]] = {
    "expression": ("expression",),  # one expression, exact span (may be mid-line)
    "statement": ("statement",),  # one simple statement, whole lines
    "block": ("body",),  # the body of an if/for/while/with/try clause, whole lines
    "body": ("function_body",),  # a function's body after its docstring, whole lines
}
_FIELDS = ("task_id", "entry_point", "prompt", "suffix", "canonical_solution", "test")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a .jsonl or .jsonl.gz file (HumanEval and the infilling sets ship gzipped)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _task(task_id: str, problem: Mapping[str, Any], prompt: str, middle: str, suffix: str) -> dict[str, Any]:
    values = (task_id, problem["entry_point"], prompt, suffix, middle, problem["test"])
    return dict(zip(_FIELDS, values))


def single_line_tasks(problems: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """HumanEval-SingleLineInfilling rebuilt from HumanEval problems (same order, same fields)."""
    tasks = []
    for problem in problems:
        lines = problem["canonical_solution"].split("\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            prompt = problem["prompt"] + "\n".join(lines[:i]) + "\n"
            suffix = "\n".join(lines[i + 1 :])
            tasks.append(_task(f"SingleLineInfilling/{problem['task_id']}/L{i}", problem, prompt, line + "\n", suffix))
    return tasks


def syntax_tasks(
    problems: Iterable[Mapping[str, Any]],
    kinds: Iterable[str] = ("expression", "statement", "block", "body"),
) -> list[dict[str, Any]]:
    """Infill tasks whose middle is a syntax-node span of the canonical solution.

    task_id: f"SyntaxInfill/{kind}/{task_id}/{k}", k counting that kind's spans in the problem in
    source order. Order: kinds as given, then problems as given, then spans by (start, end).
    Spans are computed on prompt + canonical_solution (the docstring and signature give the tree its
    context) and kept only when they lie entirely inside the solution and are not blank.
    Raises ConfigError for an unknown kind.
    """
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in SYNTAX_TASK_KINDS]
    if unknown:
        raise ConfigError(f"unknown syntax task kind(s) {unknown}; expected some of {list(SYNTAX_TASK_KINDS)}")
    problems = list(problems)
    wanted = sorted({span_kind for k in kinds for span_kind in SYNTAX_TASK_KINDS[k]})
    spans_by_problem = []
    for problem in problems:
        full = problem["prompt"] + problem["canonical_solution"]
        spans = node_spans(full, language="python", kinds=wanted)
        cut = len(problem["prompt"])
        spans_by_problem.append([s for s in spans if s.start >= cut and full[s.start : s.end].strip()])
    tasks = []
    for kind in kinds:
        for problem, spans in zip(problems, spans_by_problem):
            full = problem["prompt"] + problem["canonical_solution"]
            chosen = [s for s in spans if s.kind in SYNTAX_TASK_KINDS[kind]]
            for k, span in enumerate(chosen):
                task_id = f"SyntaxInfill/{kind}/{problem['task_id']}/{k}"
                tasks.append(_task(task_id, problem, full[: span.start], full[span.start : span.end], full[span.end :]))
    return tasks

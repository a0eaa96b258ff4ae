"""Tasks of humaneval-syntax that an EMPTY hole passes: removing the node leaves code the tests accept
(e.g. `return None` instead of `return False`, `split()` instead of `split(' ')`). They measure nothing,
so the task set leaves them out. Found by executing an empty completion for all 3,928 generated tasks:

    python -m diffucode_evals.syntax_trivial DATA_DIR   # prints this list again from a fresh run

(74 tasks: 61 expression, 13 statement; 19 more time out and 3,835 fail, which is what an empty hole should do).
"""

from __future__ import annotations

TRIVIAL_HOLES: frozenset[str] = frozenset({
    "SyntaxInfill/expression/HumanEval/101/6",
    "SyntaxInfill/expression/HumanEval/109/21",
    "SyntaxInfill/expression/HumanEval/109/22",
    "SyntaxInfill/expression/HumanEval/111/5",
    "SyntaxInfill/expression/HumanEval/116/9",
    "SyntaxInfill/expression/HumanEval/119/9",
    "SyntaxInfill/expression/HumanEval/12/1",
    "SyntaxInfill/expression/HumanEval/124/12",
    "SyntaxInfill/expression/HumanEval/124/36",
    "SyntaxInfill/expression/HumanEval/127/11",
    "SyntaxInfill/expression/HumanEval/127/12",
    "SyntaxInfill/expression/HumanEval/127/3",
    "SyntaxInfill/expression/HumanEval/127/8",
    "SyntaxInfill/expression/HumanEval/128/1",
    "SyntaxInfill/expression/HumanEval/129/4",
    "SyntaxInfill/expression/HumanEval/137/22",
    "SyntaxInfill/expression/HumanEval/137/26",
    "SyntaxInfill/expression/HumanEval/147/31",
    "SyntaxInfill/expression/HumanEval/153/10",
    "SyntaxInfill/expression/HumanEval/153/3",
    "SyntaxInfill/expression/HumanEval/153/7",
    "SyntaxInfill/expression/HumanEval/161/24",
    "SyntaxInfill/expression/HumanEval/162/7",
    "SyntaxInfill/expression/HumanEval/17/9",
    "SyntaxInfill/expression/HumanEval/19/18",
    "SyntaxInfill/expression/HumanEval/20/15",
    "SyntaxInfill/expression/HumanEval/25/6",
    "SyntaxInfill/expression/HumanEval/39/1",
    "SyntaxInfill/expression/HumanEval/39/13",
    "SyntaxInfill/expression/HumanEval/40/5",
    "SyntaxInfill/expression/HumanEval/40/9",
    "SyntaxInfill/expression/HumanEval/46/20",
    "SyntaxInfill/expression/HumanEval/46/21",
    "SyntaxInfill/expression/HumanEval/46/3",
    "SyntaxInfill/expression/HumanEval/48/6",
    "SyntaxInfill/expression/HumanEval/52/2",
    "SyntaxInfill/expression/HumanEval/56/9",
    "SyntaxInfill/expression/HumanEval/59/1",
    "SyntaxInfill/expression/HumanEval/59/7",
    "SyntaxInfill/expression/HumanEval/6/20",
    "SyntaxInfill/expression/HumanEval/61/9",
    "SyntaxInfill/expression/HumanEval/65/10",
    "SyntaxInfill/expression/HumanEval/65/14",
    "SyntaxInfill/expression/HumanEval/67/4",
    "SyntaxInfill/expression/HumanEval/68/2",
    "SyntaxInfill/expression/HumanEval/73/9",
    "SyntaxInfill/expression/HumanEval/75/5",
    "SyntaxInfill/expression/HumanEval/76/1",
    "SyntaxInfill/expression/HumanEval/81/10",
    "SyntaxInfill/expression/HumanEval/81/24",
    "SyntaxInfill/expression/HumanEval/81/26",
    "SyntaxInfill/expression/HumanEval/81/28",
    "SyntaxInfill/expression/HumanEval/81/30",
    "SyntaxInfill/expression/HumanEval/81/8",
    "SyntaxInfill/expression/HumanEval/86/10",
    "SyntaxInfill/expression/HumanEval/91/9",
    "SyntaxInfill/expression/HumanEval/94/7",
    "SyntaxInfill/expression/HumanEval/95/27",
    "SyntaxInfill/expression/HumanEval/99/0",
    "SyntaxInfill/expression/HumanEval/99/10",
    "SyntaxInfill/expression/HumanEval/99/6",
    "SyntaxInfill/statement/HumanEval/109/2",
    "SyntaxInfill/statement/HumanEval/124/0",
    "SyntaxInfill/statement/HumanEval/127/3",
    "SyntaxInfill/statement/HumanEval/129/1",
    "SyntaxInfill/statement/HumanEval/150/2",
    "SyntaxInfill/statement/HumanEval/20/0",
    "SyntaxInfill/statement/HumanEval/20/3",
    "SyntaxInfill/statement/HumanEval/33/0",
    "SyntaxInfill/statement/HumanEval/46/3",
    "SyntaxInfill/statement/HumanEval/92/1",
    "SyntaxInfill/statement/HumanEval/95/3",
    "SyntaxInfill/statement/HumanEval/95/8",
    "SyntaxInfill/statement/HumanEval/96/3",
})


def find_trivial(data_dir: str, workers: int | None = None) -> list[str]:
    """Run an empty completion for every generated task (before this filter) and return those that pass."""
    from .data import _parse_humaneval_syntax, get_spec, read_records, resolve_file
    from .execution import Limits, run_programs

    path, _, _ = resolve_file(get_spec("humaneval-syntax"), data_dir=data_dir, allow_hub=False)
    tasks, _ = _parse_humaneval_syntax(read_records(path), str(path), {}, keep_trivial=True)
    results = run_programs([t.program("") for t in tasks], Limits(timeout_s=10), workers=workers)
    return sorted(t.task_id for t, r in zip(tasks, results) if r.passed)


if __name__ == "__main__":
    import sys

    for task_id in find_trivial(sys.argv[1] if len(sys.argv) > 1 else "."):
        print(task_id)

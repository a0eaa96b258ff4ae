"""Tasks of humaneval-syntax that an EMPTY hole passes: removing the node leaves code the tests accept
(e.g. `return None` instead of `return False`, `split()` instead of `split(' ')`). They measure nothing,
so the task set leaves them out. Found by executing an empty completion for all 3,928 generated tasks:

    python -m diffucode_evals.syntax_trivial DATA_DIR   # prints this list again from a fresh run

(74 tasks: 61 expression, 13 statement; 19 more time out and 3,835 fail, which is what an empty hole should do).
"""

from __future__ import annotations

from .trivial_holes import TRIVIAL_HOLES  # noqa: F401 (the list this script regenerates)


def find_trivial(data_dir: str, workers: int | None = None) -> list[str]:
    """Run an empty completion for every generated task (before this filter) and return those that pass."""
    from .data import get_spec, parse_humaneval_syntax, read_records, resolve_file
    from .execution import Limits, run_programs

    path, _, _ = resolve_file(get_spec("humaneval-syntax"), data_dir=data_dir, allow_hub=False)
    tasks, _ = parse_humaneval_syntax(read_records(path), str(path), {}, keep_trivial=True)
    results = run_programs([t.program("") for t in tasks], Limits(timeout_s=10), workers=workers)
    return sorted(t.task_id for t, r in zip(tasks, results) if r.passed)


if __name__ == "__main__":
    import sys

    for task_id in find_trivial(sys.argv[1] if len(sys.argv) > 1 else "."):
        print(task_id)

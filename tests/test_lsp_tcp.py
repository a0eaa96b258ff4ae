"""The real server over TCP with a real (tiny, random) model, spoken to byte by byte.

Covers what a well-behaved client library cannot send: bodies that are not JSON or not UTF-8,
requests with params of the wrong shape, and the shutdown/exit handshake.
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
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.messages: list[dict] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
                if len(rest) < length:
                    break
                body, buf = rest[:length], rest[length:]
                with self.cond:
                    self.messages.append(json.loads(body))
                    self.cond.notify_all()

    def send_bytes(self, body: bytes) -> None:
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

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
    proc = subprocess.Popen([sys.executable, "-m", "diffucode_lsp", "--tcp", f"127.0.0.1:{port}", "--log-file", str(log)])
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
        "initializationOptions": {"model": str(tiny_model_dir), "validate": False, "steps": 2, "maxNewTokens": 8, "debounceMs": 0, "threads": 1}}})
    caps = c.response(1)["result"]["capabilities"]
    assert "inlineCompletionProvider" in caps and caps["codeActionProvider"]
    c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    uri = "file:///tmp/tcp/demo.py"
    text = "def area(w, h):\n    return w * h\n\nsize = \"漢字😀\" + \n"
    c.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}})
    c.send({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": uri}}})  # malformed notification

    c.send({"jsonrpc": "2.0", "id": 2, "method": "textDocument/inlineCompletion", "params": {"textDocument": {"uri": uri}}})
    assert c.response(2)["error"]["code"] == -32602

    col16 = len('size = "漢字😀" + '.encode("utf-16-le")) // 2
    c.send({"jsonrpc": "2.0", "id": 3, "method": "textDocument/inlineCompletion", "params": {
        "textDocument": {"uri": uri}, "position": {"line": 3, "character": col16}, "context": {"triggerKind": 2}}})
    items = c.response(3)["result"]["items"]
    assert items and items[0]["insertText"].strip()
    assert items[0]["range"] == {"start": {"line": 3, "character": col16}, "end": {"line": 3, "character": col16}}

    c.send({"jsonrpc": "2.0", "id": 4, "method": "diffucode/infill", "params": {
        "textDocument": {"uri": uri, "version": 1}, "range": {"start": {"line": 1, "character": 11}, "end": {"line": 1, "character": 16}}}})
    reply = c.response(4)["result"]
    assert reply["candidates"] and reply["edit"]["documentChanges"][0]["textDocument"]["version"] == 1

    c.send({"jsonrpc": "2.0", "id": 5, "method": "diffucode/status"})
    st = c.response(5)["result"]
    assert st["loaded"] is True and st["jobs"]["done"] == 2

    c.send({"jsonrpc": "2.0", "id": 6, "method": "shutdown"})
    assert c.response(6).get("result", "missing") is None
    c.send({"jsonrpc": "2.0", "method": "exit"})
    assert proc.wait(timeout=30) == 0

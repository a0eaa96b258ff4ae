"""`diffucode lsp`: run the language server over stdio (default) or TCP.

Registered as a `diffucode` subcommand through the `diffucode.commands` entry-point group
(`register`), and runnable on its own as `python -m diffucode_lsp`. stdout belongs to the protocol:
logs go to --log-file or stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys

from diffucode.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tcp", metavar="HOST:PORT", default=None,
                   help="listen on TCP instead of stdio (e.g. 127.0.0.1:2087)")
    p.add_argument("--model", default=None,
                   help="default model: folder or hub id (editor settings override it; default: the embedded model)")
    p.add_argument("--device", default=None, help="default torch device (default: cpu)")
    p.add_argument("--compile", default=None, choices=["none", "default", "reduce-overhead", "max-autotune"],
                   help="default torch.compile mode for diffucode's own models (default: none; see docs/lsp.md)")
    p.add_argument("--quantize", default=None, choices=["none", "int8", "auto"],
                   help="default quantization: int8 dynamic linear layers on CPU, or auto: int8 where it measures "
                        "faster on this CPU when the model loads (default: auto)")
    p.add_argument("--log-file", default=None, help="write the server log here (default: stderr)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="log level (default: info)")


def register(subparsers) -> None:
    """Add the `lsp` subcommand to the main `diffucode` parser."""
    p = subparsers.add_parser(
        "lsp",
        help="run the language server (stdio by default)",
        description="Language server: inline completion, infill/rewrite of a selection, denoising progress.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def parse_tcp(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    try:
        n = int(port)
    except ValueError:
        raise ConfigError(f"--tcp expects HOST:PORT, got {value!r}") from None
    if not 0 < n < 65536:
        raise ConfigError(f"--tcp port must be 1-65535, got {n}")
    return host or "127.0.0.1", n


def _setup_logging(args) -> None:
    handler = (logging.FileHandler(args.log_file, encoding="utf-8") if args.log_file
               else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(args.log_level.upper())
    if args.log_level != "debug":  # pygls logs every message body at INFO
        logging.getLogger("pygls").setLevel(logging.WARNING)


def run(args, *, loader=None) -> int:
    """Serve until the client exits. `loader(model, device, **load_options) -> Engine` replaces model
    loading (tests); the load options include quantize "auto" by default."""
    try:
        from diffucode_lsp.server import build_server
        from diffucode_lsp.settings import ServerSettings, merge
    except ImportError as exc:
        if exc.name not in ("pygls", "lsprotocol", "cattrs", "attrs"):
            raise
        print(f"diffucode lsp: {exc.name} is not installed: pip install 'diffucode[lsp]'", file=sys.stderr)
        return 2

    _setup_logging(args)
    tcp = parse_tcp(args.tcp) if args.tcp else None
    defaults = ServerSettings()
    given = {k: getattr(args, k, None) for k in ("model", "device", "compile", "quantize")}
    if any(v is not None for v in given.values()):
        from dataclasses import replace

        defaults = replace(defaults, **{k: v for k, v in given.items() if v is not None})
        merge(defaults, {})  # checks them: a bad --device or --compile with --quantize int8 is an error here (exit 2)
    server = build_server(loader=loader, defaults=defaults)
    if tcp:
        logging.getLogger(__name__).info("listening on %s:%d", *tcp)
        server.start_tcp(*tcp)
    else:
        server.start_io(stdin=_LspStdin(sys.stdin.buffer))
    return 0 if server.protocol._shutdown else 1  # LSP: exit without shutdown -> 1


class _LspStdin:
    """stdin for pygls: a Content-Length header matched case-insensitively and anywhere in its line, so a
    body of the wrong length (or a lowercase header) costs a message instead of the whole session.

    A declared length that is too long would make the body swallow the start of the next message, and
    the server would wait for bytes the client never sends (it waits for an answer). The body is read
    as it arrives instead: where a Content-Length header line shows up in it (which no JSON body can
    hold: its strings cannot contain a raw line break), or where it ends in the first bytes of one,
    the body ends there (it fails to parse: one -32700 error) and the header is read next, as the
    next message's; and when the client stops sending after a whole JSON message, that message is
    the body (answered as if its length had been right)."""

    _CL = re.compile(rb"content-length:\s*(\d+)\s*$", re.I)
    _NEXT = re.compile(rb"content-length:[ \t]*\d+[ \t]*\r?\n", re.I)
    _HEADER_REST = re.compile(rb"content-length:[ \t]*\d*\r?", re.I)  # a header line cut before its \n

    def __init__(self, raw):
        self.raw = raw
        self._held = b""  # read past the end of a body that was cut short: the next message's start

    def read(self, n):
        body, self._held = bytearray(self._held[:n]), self._held[n:]
        scanned = 0
        while True:
            m = self._NEXT.search(body, max(0, scanned - 64))  # only what is new (and a header split across reads)
            if m:
                return self._cut(body, m.start())
            scanned = len(body)
            if len(body) >= n:
                # Declared a few bytes too long: the body ends inside the next header line ("}Content-Le").
                end = max(body.rfind(b"}"), body.rfind(b"]")) + 1
                return self._cut(body, end) if end and self._header_start(body[end:]) else bytes(body)
            want = n - len(body)
            chunk = self._read_some(want)
            if not chunk:  # end of input
                return bytes(body)
            body += chunk
            if len(chunk) < want and _complete_json(body):  # the client stopped after a whole message
                return bytes(body)

    def _header_start(self, tail: bytearray) -> bool:
        """Is `tail` (what follows a body's last } or ]) the first bytes of a Content-Length line?"""
        return bool(tail) and (b"content-length:".startswith(bytes(tail).lower())
                               or bool(self._HEADER_REST.fullmatch(tail)))

    def _cut(self, body: bytearray, at: int) -> bytes:
        self._held = bytes(body[at:]) + self._held
        return bytes(body[:at]) or b" "  # (an empty body would end pygls' read loop)

    def _read_some(self, n):
        read1 = getattr(self.raw, "read1", None)
        return read1(n) if read1 else self.raw.read(n)  # read1: what has arrived, without waiting for all n

    def readline(self):
        if self._held:
            line, sep, rest = self._held.partition(b"\n")
            if sep:
                line, self._held = line + sep, rest
            else:
                line, self._held = self._held + self.raw.readline(), b""
        else:
            line = self.raw.readline()
        m = self._CL.search(line.rstrip(b"\r\n"))
        return b"Content-Length: %s\r\n" % m.group(1) if m else line


def _complete_json(body: bytearray) -> bool:
    """Is `body` a whole JSON object or array (a message whose declared length was too long)?"""
    end = body.rstrip()
    if end[-1:] not in (b"}", b"]"):
        return False
    try:
        json.loads(bytes(end))
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None, *, loader=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffucode_lsp", description="diffucode language server")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args, loader=loader)
    except ConfigError as exc:
        print(f"diffucode lsp: {exc}", file=sys.stderr)
        return 2

"""In-process tests of the language server's pieces: settings, coordinates, the CLI, the protocol."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import PositionCodec

from diffucode.errors import ConfigError, InputFileError, SpanError
from diffucode_lsp import cli, documents
from diffucode_lsp.documents import LspTextDocument, Window, offset_at, position_at, single_line_edit
from diffucode_lsp.settings import ServerSettings, describe, generation_overrides, merge

NASTY = [
    "",
    "a",
    "😀",
    "x = 1",
    "x = 1\n",
    "a😀b\n漢字\r\nx\ty\n",
    "s = '😀😀'\r\nt = 2\r\n",
    "\n\n\n",
    "one\rtwo\rthree",
    "tab\there 😀\n" * 3 + "end 漢",
    "a = 1\x0c\nb = '\u2028'\nc = '\x85\x0b\x1c'\n",  # str.splitlines() breaks here, LSP does not
]


UNITS = {"utf-16": lambda t: len(t.encode("utf-16-le")) // 2, "utf-8": lambda t: len(t.encode("utf-8")), "utf-32": len}


def expected_position(text: str, offset: int, encoding: str = "utf-16") -> tuple[int, int]:
    """Independent reference: LSP lines end at \\n, \\r\\n or \\r; characters are code units of the encoding."""
    line, start, i = 0, 0, 0
    while i < offset:
        if text[i] == "\r" and i + 1 < len(text) and text[i + 1] == "\n":
            if i + 2 <= offset:
                line, start = line + 1, i + 2
            i += 2
            continue
        if text[i] in "\r\n":
            line, start = line + 1, i + 1
        i += 1
    return line, UNITS[encoding](text[start:offset])


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
@pytest.mark.parametrize("text", NASTY)
def test_offsets_and_positions_round_trip_on_nasty_text(text, encoding):
    doc = LspTextDocument("file:///t.py", source=text, position_codec=PositionCodec(encoding))
    for off in range(len(text) + 1):
        if 0 < off < len(text) and text[off - 1] == "\r" and text[off] == "\n":
            continue  # between \r and \n: no LSP position
        pos = position_at(doc, off)
        assert (pos.line, pos.character) == expected_position(text, off, encoding), (text, off)
        assert offset_at(doc, pos) == off, (text, off, pos)


def test_positions_past_the_end_are_refused_not_clamped():
    doc = TextDocument("file:///t.py", source="ab😀\ncd")
    for line, ch in [(0, 5), (1, 3), (2, 1), (3, 0), (-1, 0)]:
        with pytest.raises(SpanError):
            offset_at(doc, lsp.Position(line=line, character=max(ch, 0)) if line >= 0 else _neg())
    assert offset_at(doc, lsp.Position(line=0, character=4)) == 3  # after the emoji (2 UTF-16 units)
    assert offset_at(doc, lsp.Position(line=2, character=0)) == 6  # (line count, 0): tolerated as the end
    doc2 = TextDocument("file:///t.py", source="ab\n")
    assert offset_at(doc2, lsp.Position(line=1, character=0)) == 3


def _neg():
    p = lsp.Position(line=0, character=0)
    object.__setattr__(p, "line", -1)
    return p


def test_reversed_range_is_refused():
    doc = TextDocument("file:///t.py", source="abc\n")
    with pytest.raises(SpanError):
        documents.span_at(doc,
                          lsp.Range(start=lsp.Position(line=0, character=2), end=lsp.Position(line=0, character=1)))


def test_lsp_lines_match_splitlines_except_at_foreign_breaks():
    for text in NASTY[:-1]:
        assert LspTextDocument("file:///t.py", source=text).lines == tuple(text.splitlines(True))
    assert LspTextDocument("file:///t.py", source="a\x0cb\u2028c\nd").lines == ("a\x0cb\u2028c\n", "d")


def test_incremental_sync_after_a_form_feed():
    doc = LspTextDocument("file:///t.py", source="x = 1\x0c\ny = 2\n")
    doc.apply_change(lsp.TextDocumentContentChangePartial(
        range=lsp.Range(start=lsp.Position(line=1, character=4), end=lsp.Position(line=1, character=5)), text="3"))
    assert doc.source == "x = 1\x0c\ny = 3\n"


def test_check_text_refuses_what_cannot_be_encoded_or_is_too_large():
    ok = TextDocument("file:///t.py", source="fine 😀\n")
    assert documents.check_text(ok, 100) == "fine 😀\n"
    for text, why in [("s = '\udcff'", "lone surrogate"), ("x" * 11, "too large")]:
        with pytest.raises(InputFileError, match=re.escape(why)):
            documents.check_text(TextDocument("file:///t.py", source=text), 10)


def test_single_line_edit():
    src = "a = 1\nb = 2\n"
    assert single_line_edit(src, 4, 4, "x\ny") == (4, 4, "x\ny")  # an insertion stays as it is
    assert single_line_edit(src, 4, 6, "9\n") == (4, 5, "9")  # common "\n" suffix dropped
    assert single_line_edit(src, 0, 12, "a = 1\nb = 3\n") == (10, 11, "3")
    assert single_line_edit(src, 4, 10, "zz") is None  # really replaces a line break


def test_window_is_line_aligned_and_keeps_offsets():
    src = "".join(f"line {i}\n" for i in range(1000))
    hole = src.index("line 500")
    w = Window.around(src, hole, hole, 200)
    assert w.base > 0 and (w.base == 0 or src[w.base - 1] == "\n")
    assert src[w.base : w.base + len(w.text)] == w.text
    assert w.text.endswith("\n") and w.text[hole - w.base :].startswith("line 500")
    assert Window.around(src, hole, hole, 0) == Window(0, src)
    assert Window.around("short", 2, 2, 200) == Window(0, "short")


def test_settings_merge_camel_snake_nested_and_unknown():
    s, warnings = merge(ServerSettings(), {"diffucode": {"maxNewTokens": 12, "debounce_ms": 0, "validate": False,
                                                         "frobnicate": 1, "searchLengths": [4, 8]}})
    assert s.generation.max_new_tokens == 12 and s.debounce_ms == 0 and s.generation.validate is False
    assert s.generation.search_lengths == (4, 8)
    assert warnings == ["unknown setting 'frobnicate' ignored"]
    s2, _ = merge(s, {"steps": 3})  # partial update keeps the rest
    assert s2.generation.steps == 3 and s2.generation.max_new_tokens == 12
    assert merge(s2, None)[0] is s2


@pytest.mark.parametrize("raw", [
    {"steps": 0}, {"steps": "4"}, {"validate": 1}, {"temperature": True}, {"strategy": "random"}, {"debounceMs": -1},
    {"model": ""}, {"inline": {"nope": 1}}, {"inline": 3}, {"rewriteFraction": 0}, {"searchLengths": [1, "2"]},
    [1, 2], "x",
    {"compile": "fastest"}, {"compile": None}, {"quantize": "int4"}, {"compile": "default", "quantize": "int8"},
    {"quantize": "Auto"}, {"device": "bogus"}, {"device": "cuda:99"},
])
def test_bad_settings_raise_config_error(raw):
    with pytest.raises(ConfigError):
        merge(ServerSettings(), raw)


def test_load_options_reach_the_loader_and_a_change_reloads():
    import asyncio

    from diffucode_lsp.worker import Worker

    s, _ = merge(ServerSettings(), {"compile": "reduce-overhead", "quantize": None})
    assert s.load_options() == {"compile": "reduce-overhead"}
    s = dataclasses.replace(s, quantize="int8")  # (the settings check refuses the pair; the worker passes anything)
    assert s.load_options() == {"compile": "reduce-overhead", "quantize": "int8"}
    # int8 where it measures faster (models.pick_quantization)
    assert ServerSettings().load_options() == {"quantize": "auto"}
    assert merge(ServerSettings(), {"quantize": None})[0].load_options() == {}  # null: the float model
    calls = []
    w = Worker(lambda model, device, **opts: calls.append((model, device, opts)) or object())
    assert w.configure(None, "cpu", **s.load_options())
    asyncio.run(w.get_engine())
    assert calls == [(None, "cpu", {"compile": "reduce-overhead", "quantize": "int8"})]
    assert not w.configure(None, "cpu", quantize="int8", compile="reduce-overhead")  # same choice, any order
    assert w.configure(None, "cpu", quantize="int8")  # compile turned off: a new engine
    assert w.engine is None


def test_job_settings_language_inline_and_fixed_length():
    s, _ = merge(ServerSettings(), {"steps": 8, "inline": {"steps": 2}})
    assert s.infill_settings("rust").language == "rust"
    assert s.infill_settings("rust").steps == 8
    assert s.infill_settings("rust", inline=True).steps == 2
    assert s.infill_settings(None, {"length": 5}).length_mode == "fixed"
    explicit, _ = merge(s, {"language": "python"})
    assert explicit.infill_settings("rust").language == "python"
    with pytest.raises(ConfigError):
        generation_overrides({"notAKnob": 1})


def test_every_setting_is_described_and_json_round_trips():
    rows = describe()
    keys = [k for k, _, _ in rows]
    assert len(keys) == len(set(keys)) and all(h for _, h, _ in rows)
    js = ServerSettings().to_json()
    assert set(js) == set(keys)
    again, warnings = merge(ServerSettings(), json.loads(json.dumps(js)))
    assert warnings == [] and again == ServerSettings()


def test_docs_list_every_setting():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "lsp.md").read_text(encoding="utf-8")
    missing = [k for k, _, _ in describe() if f"| `{k}` |" not in doc]
    assert not missing, f"docs/lsp.md lacks rows for {missing}"


def test_cli_register_and_tcp_parsing():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["lsp", "--tcp", "127.0.0.1:2087", "--model", "m", "--device", "cpu", "--log-file",
                              "x.log"])
    assert args.func is cli.run and args.tcp == "127.0.0.1:2087" and args.model == "m"
    assert cli.parse_tcp("127.0.0.1:2087") == ("127.0.0.1", 2087)
    assert cli.parse_tcp(":9000") == ("127.0.0.1", 9000)
    for bad in ("host", "host:0", "host:port", "h:70000"):
        with pytest.raises(ConfigError):
            cli.parse_tcp(bad)


def test_command_line_defaults_reach_the_server_settings(monkeypatch):
    import diffucode_lsp.server as server_mod

    seen = {}

    class Fake:
        class protocol:
            _shutdown = True

        def start_io(self, stdin=None):
            seen["started"] = True

    monkeypatch.setattr(server_mod, "build_server",
                        lambda loader=None, defaults=None: seen.update(defaults=defaults) or Fake())
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["lsp", "--compile", "reduce-overhead", "--device", "auto"])
    assert cli.run(args) == 0 and seen["started"]
    d = seen["defaults"]
    assert (d.compile, d.quantize, d.device, d.model) == ("reduce-overhead", "auto", "auto", None)
    # auto does nothing with compile or on a GPU
    assert d.load_options() == {"compile": "reduce-overhead", "quantize": "auto"}
    args = parser.parse_args(["lsp", "--quantize", "int8"])
    assert cli.run(args) == 0 and seen["defaults"].load_options() == {"quantize": "int8"}
    with pytest.raises(SystemExit):
        parser.parse_args(["lsp", "--compile", "fastest"])
    for bad in (["--device", "bogus"], ["--quantize", "int8", "--compile", "default"]):  # refused before serving
        seen.clear()
        with pytest.raises(ConfigError):
            cli.run(parser.parse_args(["lsp", *bad]))
        assert "started" not in seen


def test_help_of_python_dash_m_and_of_diffucode_lsp():
    out = subprocess.run([sys.executable, "-m", "diffucode_lsp", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--tcp" in out.stdout and "--log-file" in out.stdout
    # The main CLI finds the subcommand through the `diffucode.commands` entry point.
    out = subprocess.run([sys.executable, "-m", "diffucode", "lsp", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--tcp" in out.stdout, out.stderr


def test_undecodable_requests_become_invalid_params_responses():
    from diffucode_lsp.server import build_server

    server = build_server()
    sent = []
    server.protocol._send_data = sent.append
    msg = server.protocol.structure_message({"jsonrpc": "2.0", "id": 7, "method": "textDocument/inlineCompletion",
                                             "params": {"position": 3}})
    server.protocol.handle_message(msg)
    assert sent and sent[0].id == 7 and sent[0].error.code == -32602
    note = server.protocol.structure_message({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {}})
    server.protocol.handle_message(note)  # dropped with a log line, no response
    assert len(sent) == 1


def test_a_position_inside_a_surrogate_pair_is_refused():
    doc = TextDocument("file:///t.py", source="s = '😀😀' + x\n")
    assert offset_at(doc, lsp.Position(line=0, character=5)) == 5  # before the first emoji
    assert offset_at(doc, lsp.Position(line=0, character=7)) == 6  # between the two
    for ch in (6, 8):  # between the halves of each
        with pytest.raises(SpanError, match="surrogate pair"):
            offset_at(doc, lsp.Position(line=0, character=ch))


@pytest.mark.asyncio
async def test_an_edit_is_never_applied_to_a_reopened_document(monkeypatch):
    """Versions restart when a document is closed and reopened: the same number is another text."""
    from diffucode_lsp.server import build_server

    server = build_server()
    before = TextDocument("file:///t.py", source="x = 1\n", version=1)
    after = TextDocument("file:///t.py", source="y = 2\n", version=1)
    monkeypatch.setattr(server, "open_doc", lambda uri: after)
    sent = []
    monkeypatch.setattr(server, "workspace_apply_edit_async", lambda params: sent.append(params))
    applied, why = await server.apply_edit("file:///t.py", 1, {"documentChanges": []}, "infill", before)
    assert applied is False and "closed" in why and not sent


@pytest.mark.asyncio
async def test_a_destructive_result_is_refused_and_nothing_is_applied(monkeypatch):
    """Infill selection over code, with a model that writes nothing: the reply names the refusal,
    no workspace/applyEdit is sent, and the command's message says why (guard.py)."""
    from diffucode.testing import sample_tokenizer
    from diffucode_lsp.server import build_server
    from tests.scripted import scripted_engine

    server = build_server()
    server.protocol.client_capabilities = lsp.ClientCapabilities()  # as after `initialize`
    server.settings = dataclasses.replace(server.settings, stream=False)
    doc = TextDocument("file:///t.py", source="import os\n\nx = os.sep\ny = 2\n", version=3)
    monkeypatch.setattr(server, "open_doc", lambda uri: doc)
    engine = scripted_engine(sample_tokenizer(512), "")

    async def get_engine(**kw):
        return engine

    monkeypatch.setattr(server, "engine", get_engine)
    sent, shown = [], []
    monkeypatch.setattr(server, "workspace_apply_edit_async", lambda params: sent.append(params))
    monkeypatch.setattr(server, "show", lambda kind, text: shown.append(text))
    line2 = lsp.Range(start=lsp.Position(line=2, character=0), end=lsp.Position(line=3, character=0))
    reply = await server.edit_job("file:///t.py", line2, "infill", apply=True)
    assert reply["applied"] is False and reply["edit"] is None and not sent
    assert reply["refused"].startswith("refused: the model filled line 3 with nothing")
    assert reply["failureReason"] == reply["refused"]
    ok = await server.edit_job("file:///t.py", line2, "infill", {"allowDelete": True})
    assert ok["refused"] is None and ok["edit"] is not None
    server.spawn_command_job("infill", {
        "uri": "file:///t.py", "range": {"start": {"line": 2, "character": 0}, "end": {"line": 3, "character": 0}},
        "version": 3})
    for _ in range(200):
        if shown:
            break
        await asyncio.sleep(0.02)
    assert shown and "refused: " in shown[0] and "allowDelete" in shown[0]

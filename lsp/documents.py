"""The edge between LSP coordinates and the engine's: UTF-16 positions <-> 0-based `str` offsets.

Conversions go through pygls' `TextDocument` helpers (its position codec knows the negotiated
encoding); this module validates positions first, because pygls 2.1 silently clamps (and sometimes
overshoots) positions past the end of a line or of the document, and it fixes where pygls splits
lines (`LspTextDocument`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lsprotocol import types as lsp
from pygls.workspace import TextDocument, Workspace
from pygls.workspace.position_codec import ServerTextPosition

from diffucode.errors import InputFileError, SpanError

_LSP_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


class LspTextDocument(TextDocument):
    """pygls' TextDocument with lines split only where LSP splits them: \\n, \\r\\n, \\r.

    pygls 2.1 uses str.splitlines(), which also breaks at \\x0b \\x0c \\x1c-\\x1e \\x85 \\u2028
    \\u2029; in a document containing one (a form feed in a Python file, U+2028 in a JS string) its
    line numbers differ from the client's, so incremental edits and positions land on the wrong line.
    Every pygls helper (sync, offset_at_position, ...) reads `lines`, so fixing it here fixes them all.
    """

    @property
    def lines(self):
        return tuple(m.group() for m in _LSP_LINE.finditer(self.source))


class LspWorkspace(Workspace):
    """pygls' Workspace, creating LspTextDocuments."""

    def _create_text_document(self, doc_uri, source=None, version=None, language_id=None):
        return LspTextDocument(doc_uri, source=source, version=version, language_id=language_id,
                               sync_kind=self._sync_kind, position_codec=self._position_codec)


def adopt(workspace: Workspace) -> None:
    """Make pygls' freshly created workspace an LspWorkspace (same state; no documents yet)."""
    if type(workspace) is Workspace:
        workspace.__class__ = LspWorkspace


def check_text(doc: TextDocument, max_chars: int) -> str:
    """The document's text, or InputFileError when it cannot be worked on."""
    src = doc.source
    if len(src) > max_chars:
        raise InputFileError(f"document too large: {len(src):,} characters (maxFileChars is {max_chars:,})")
    try:
        src.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputFileError(f"document is not valid Unicode (lone surrogate at offset {exc.start})") from exc
    return src


def _line_body(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def offset_at(doc: TextDocument, pos: lsp.Position) -> int:
    """The str offset of an LSP position; SpanError when it lies past the end of its line or the document."""
    lines = doc.lines
    if pos.line < 0 or pos.character < 0:
        raise SpanError(f"negative position {pos.line}:{pos.character}")
    if pos.line >= len(lines):
        if pos.line == len(lines) and pos.character == 0:
            return len(doc.source)  # the position after the last line break
        raise SpanError(f"line {pos.line} is past the end of the document ({len(lines)} lines)")
    width = doc.position_codec.client_num_units(_line_body(lines[pos.line]))
    if pos.character > width:
        raise SpanError(f"character {pos.character} is past the end of line {pos.line} ({width} units)")
    if doc.position_codec.encoding in (None, "utf-16", lsp.PositionEncodingKind.Utf16) and 0 < pos.character < width:
        units = _line_body(lines[pos.line]).encode("utf-16-le")
        unit = int.from_bytes(units[2 * pos.character : 2 * pos.character + 2], "little")
        if 0xDC00 <= unit <= 0xDFFF:  # a low surrogate
            raise SpanError(f"character {pos.character} of line {pos.line} splits a surrogate pair")
    # pygls mutates positions it clamps; hand it a copy.
    return doc.offset_at_position(lsp.Position(line=pos.line, character=pos.character))


def span_at(doc: TextDocument, rng: lsp.Range) -> tuple[int, int]:
    s, e = offset_at(doc, rng.start), offset_at(doc, rng.end)
    if e < s:
        raise SpanError(f"reversed range {rng.start.line}:{rng.start.character}-{rng.end.line}:{rng.end.character}")
    return s, e


def position_at(doc: TextDocument, offset: int) -> lsp.Position:
    """The LSP position of a str offset (0 ≤ offset ≤ len(text))."""
    src = doc.source
    if not src:
        return lsp.Position(line=0, character=0)
    if offset >= len(src) and src[-1] not in "\r\n":
        # pygls answers (last line + 1, 0) here; the end of a last line without a newline is on that line.
        lines = doc.lines
        return doc.position_to_client_units(ServerTextPosition(len(lines) - 1, len(lines[-1])))
    return doc.client_position_at_offset(offset)


def range_at(doc: TextDocument, start: int, end: int) -> lsp.Range:
    return lsp.Range(start=position_at(doc, start), end=position_at(doc, end))


@dataclass(frozen=True)
class Window:
    """The slice of a document the engine sees: text[base : base + len(text)], cut at line starts."""

    base: int
    text: str

    @classmethod
    def around(cls, source: str, start: int, end: int, chars: int) -> "Window":
        if chars <= 0 or len(source) <= (end - start) + 2 * chars:
            return cls(0, source)
        a = max(0, start - chars)
        a = source.rfind("\n", 0, a) + 1 if a > 0 else 0
        b = min(len(source), end + chars)
        nl = source.find("\n", b)
        b = len(source) if nl < 0 else nl + 1
        return cls(a, source[a:b])


def single_line_edit(source: str, start: int, end: int, new: str) -> tuple[int, int, str] | None:
    """An equivalent edit whose replaced range lies on one line (LSP inline items must), or None.

    Drops the common suffix first (so the edit still starts where it did), then the common prefix."""
    old = source[start:end]
    if "\n" not in old and "\r" not in old:
        return start, end, new
    k = 0
    while k < min(len(old), len(new)) and old[-1 - k] == new[-1 - k]:
        k += 1
    old, new, end = old[: len(old) - k], new[: len(new) - k], end - k
    k = 0
    while k < min(len(old), len(new)) and old[k] == new[k]:
        k += 1
    old, new, start = old[k:], new[k:], start + k
    if "\n" in old or "\r" in old:
        return None
    return start, end, new

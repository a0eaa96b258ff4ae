"""Offsets: the one place where Python `str` offsets and tree-sitter's UTF-8 byte offsets meet.

Everything outside this package speaks 0-based `str` offsets; tree-sitter speaks byte offsets.
`TextIndex` converts between them in O(log k) per call, k = number of non-ASCII characters, after an
O(n) set-up done once per parsed text (a regex scan in C plus a pass over the non-ASCII characters
only), so pure-ASCII files, the common case, pay nothing.

Lines are separated by "\\n" only (a "\\r\\n" line ends at its "\\n", the "\\r" belongs to the line):
that is what tree-sitter and Python's tokenizer agree on. `str.splitlines` also splits on \\x0b,
\\x0c, \\x1c-\\x1e, \\x85, \\u2028 and \\u2029, so it is never used for positions here.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from itertools import accumulate

from diffucode.errors import SpanError

_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# Lone surrogates (from surrogateescape-decoded files) are encoded with surrogatepass: 3 bytes each,
# so every str offset still has a byte offset and the conversion stays a bijection on char starts.
_ENCODING_ERRORS = "surrogatepass"


def _extra_bytes(char: str) -> int:
    code = ord(char)
    return 1 if code < 0x800 else 2 if code < 0x10000 else 3


class TextIndex:
    """A text, its UTF-8 bytes, and str<->byte offset conversion."""

    __slots__ = ("text", "data", "_chars", "_bytes", "_extra", "_width")

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode("utf-8", _ENCODING_ERRORS)
        if len(self.data) == len(text):
            self._chars: list[int] | None = None
            return
        chars = [m.start() for m in _NON_ASCII.finditer(text)]
        width = [_extra_bytes(text[i]) for i in chars]
        extra = list(accumulate(width, initial=0))  # extra[k]: extra bytes before the k-th non-ASCII char
        self._chars = chars
        self._width = width
        self._extra = extra
        self._bytes = [c + e for c, e in zip(chars, extra)]  # byte offset where each non-ASCII char starts

    def to_byte(self, offset: int) -> int:
        """Byte offset of a str offset (0 <= offset <= len(text))."""
        if self._chars is None:
            return offset
        return offset + self._extra[bisect_left(self._chars, offset)]

    def to_str(self, byte: int) -> int:
        """Str offset of a byte offset; a byte inside a multi-byte character rounds down to its start."""
        if self._chars is None:
            return byte
        k = bisect_left(self._bytes, byte)
        if k < len(self._bytes) and self._bytes[k] == byte:
            return self._chars[k]
        if k and byte < self._bytes[k - 1] + 1 + self._width[k - 1]:
            return self._chars[k - 1]
        return byte - self._extra[k]

    # -- lines -------------------------------------------------------------------------------------

    def line_start(self, offset: int) -> int:
        """Str offset of the start of the line containing `offset`."""
        return self.text.rfind("\n", 0, offset) + 1

    def line_end(self, offset: int) -> int:
        """Str offset just past the newline ending the line containing `offset` (len(text) at EOF)."""
        nl = self.text.find("\n", offset)
        return len(self.text) if nl < 0 else nl + 1

    def line_content_end(self, offset: int) -> int:
        """Str offset of the line's end before its "\\r\\n" / "\\n"."""
        end = self.line_end(offset)
        if end > 0 and self.text[end - 1 : end] == "\n":
            end -= 1
            if end > 0 and self.text[end - 1] == "\r":
                end -= 1
        return end

    def whole_lines(self, start: int, end: int) -> tuple[int, int]:
        """Expand [start, end) to whole lines, newline included.

        An `end` sitting right after a newline (or at a line start) does not pull in the next line.
        """
        first = self.line_start(start)
        if end > start and (end == 0 or self.text[end - 1] == "\n"):
            return first, end
        return first, self.line_end(end)

    def indent_at(self, offset: int) -> str:
        """Leading whitespace of the line containing `offset`."""
        start = self.line_start(offset)
        text = self.text
        stop = start
        while stop < len(text) and text[stop] in " \t\f":
            stop += 1
        return text[start:stop]


def check_range(text: str, start: int, end: int, what: str = "range") -> None:
    """Raise SpanError (one line) for a range that does not fit `text`."""
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
        raise SpanError(f"{what} offsets must be integers, got {start!r}-{end!r}")
    if start < 0 or end < 0:
        raise SpanError(f"{what} {start}-{end} has a negative offset")
    if start > end:
        raise SpanError(f"{what} {start}-{end} is reversed")
    if end > len(text):
        raise SpanError(f"{what} {start}-{end} ends past the end of the text ({len(text)} characters)")

"""A hole as retrieval sees it, and a retrieved place's lines fitted into it.

`Hole` holds the lines around a hole, never the hole's own text. `fit_draft` turns the lines of a
candidate place into a fill of the hole: inside a line, the part between the typed head and the tail;
for whole lines, the lines re-indented to the hole's place. A draft keeps the offset it had from the
statement above it or from the line below it, whichever the block structure of the hole's place allows:
deeper after a line that opens a block (`:` or `{`), the offset from the line above inside an open
bracket, otherwise between the line below and the statement above (measured in docs/context.md).
A leaf: no torch, no index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from diffucode.renaming import WORD, Headers, code_of, enclosing_headers

Lines = list[str] | tuple[str, ...]


@dataclass(frozen=True)
class Hole:
    """The hole as retrieval sees it: the file's lines around it, never the span's own text."""

    above: tuple[str, ...]  # the window of lines above (nearest last)
    below: tuple[str, ...]  # the window of lines below
    n_lines: int  # lines the hole spans (1 for a cursor inside a line)
    head: str  # text already typed on the hole's first line, before the hole
    tail: str  # text after the hole on its last line
    headers: Headers = ()  # the def/class headers enclosing the hole, nearest first (renaming.py)
    rest: str = field(default="", repr=False, compare=False)  # the file's text with the hole's span cut out

    @cached_property
    def words(self) -> frozenset[str]:
        """The identifiers of the file outside the hole."""
        return frozenset(WORD.findall(self.rest))

    @classmethod
    def in_text(cls, text: str, start: int, end: int, *, n_lines: int | None = None, window: int = 3) -> "Hole":
        """The hole [start, end) of `text`; its text is not read. A span of whole lines (or an empty one at a
        line start) is a hole of whole lines, drafted with `n_lines` lines (default: as many as it covers,
        1 for an insertion); any other span is inside a line, between the typed head and the tail."""
        ls = text.rfind("\n", 0, start) + 1
        if start == ls and (end == len(text) or text[end - 1 : end] == "\n" or end == start):
            before, after = text[:start].split("\n")[:-1], text[end:].split("\n")
            unterminated = end > start and text[end - 1] != "\n"  # the span runs to the end of an unended file
            covered = max(1, text.count("\n", start, end) + unterminated)
            return cls(tuple(before[-window:]), tuple(after[:window]), n_lines or covered, "", "",
                       enclosing_headers(before), text[:start] + text[end:])
        le = text.find("\n", end)
        le = len(text) if le < 0 else le
        lines_above = text[:ls].split("\n")[:-1]
        below = text[le + 1 :].split("\n", window)[:window] if le < len(text) else []
        return cls(tuple(lines_above[-window:]), tuple(below[:window]), n_lines or text.count("\n", ls, le) + 1,
                   text[ls:start], text[end:le], enclosing_headers([*lines_above, text[ls:start] + "\0"]),
                   text[:start] + text[end:])


def fit_draft(body: list[str], before: Lines, after: Lines, hole: Hole) -> str | None:
    """The candidate lines as a fill of the hole: re-indented to the hole's place, the typed head and the tail
    removed. `before` and `after` are the lines around the candidate where it was found. None when the
    candidate cannot fill it (blank, or not matching the head/tail). Tab-indented lines are kept as found."""
    if not any(line.strip() for line in body):
        return None
    if hole.head.strip() or hole.tail.strip():
        return _fit_inline(body, hole)
    first = _first_code(body)
    tabs = any(line[:1] == "\t" for line in (*body, *before, *after, *hole.above, *hole.below))
    shift = 0 if tabs else _indent_at(hole, first, before, after) - first
    out = [(" " * shift + line) if shift >= 0 else line[min(-shift, _indent(line)) :] for line in body]
    return "\n".join(line if line.strip() else "" for line in out) + "\n"


def _indent_at(hole: Hole, first: int, before: Lines, after: Lines) -> int:
    """The indentation of the draft's first non-blank line (indented `first` where it was found) in the hole."""
    above_h, opens, inside_h = _statement_above(hole.above)
    above_c, _, inside_c = _statement_above(before)
    if inside_h:  # the hole continues an open bracket: the offset from the line above
        last_h, last_c = _first_code(hole.above[::-1]), _first_code(before[::-1])
        return max(0, last_h + first - last_c) if last_c is not None else last_h + 4
    below_h, below_c = _first_code(hole.below), _first_code(after)
    up = None if above_h is None or above_c is None or inside_c else above_h + first - above_c
    down = None if below_h is None or below_c is None else below_h + first - below_c
    up, down = (x if x is not None and x >= 0 else None for x in (up, down))
    if above_h is None:
        return down if down is not None else (below_h or 0)
    if opens:
        deeper = [x for x in (up, down) if x is not None and x > above_h]
        return deeper[0] if deeper else above_h + (below_h - above_h if below_h and below_h > above_h else 4)
    low = min(below_h, above_h) if below_h is not None else 0
    fits = [x for x in (down, up) if x is not None and low <= x <= above_h]
    return fits[0] if fits else above_h


def _statement_above(lines: Lines) -> tuple[int | None, bool, bool]:
    """(indentation of the statement that the last non-blank line belongs to, whether that line opens a
    block, whether it leaves a bracket open). A statement continued over lines starts where its brackets
    opened; when that is above `lines` (more brackets close than open), or there is no non-blank line,
    the indentation is None."""
    last = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].strip()), None)
    if last is None:
        return None, False, False
    depth, start = 0, 0
    for i, line in enumerate(lines[: last + 1]):
        if depth <= 0 and line.strip():
            start, depth = i, 0
        depth += _bracket_balance(line)
    if depth < 0:
        return None, False, False
    return _indent(lines[start]), code_of(lines[last]).endswith((":", "{")), depth > 0


def _bracket_balance(line: str) -> int:
    code = code_of(line)
    return sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")


def _first_code(lines: Lines) -> int | None:
    """The indentation of the first non-blank line, or None."""
    return next((_indent(line) for line in lines if line.strip()), None)


def _fit_inline(body: list[str], hole: Hole) -> str | None:
    text = "\n".join(body).strip()
    head, tail = hole.head.strip(), hole.tail.strip()
    if not text.startswith(head) or not text.endswith(tail) or len(text) <= len(head) + len(tail):
        return None
    mid = text[len(head) : len(text) - len(tail)]
    return mid.lstrip() if hole.head.endswith((" ", "\t")) else mid


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))

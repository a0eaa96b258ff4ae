"""A retrieved draft's names adapted to the hole's place.

A line borrowed from a sibling function usually names that function's things: the draft of a hole in
`def default_response_type_handler(self)` found in `def default_grant_type_handler(self)` reads
`return self.grant_types.get(self.default_grant_type)`. The headers of the two places (the nearest
enclosing `def` or `class` line of each, with its continuation lines) are aligned word by word; each
pair of differing identifiers becomes a renaming (`default_grant_type_handler` →
`default_response_type_handler`), and so does each pair of differing parts of two such identifiers
of as many parts (`grant` → `response`, split at underscores and case changes). The draft's words,
string contents included, are renamed whole where a pair names them and part by part otherwise:
`return self.response_types.get(self.default_response_type)`. A leaf: text only.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from difflib import SequenceMatcher

HEADER = re.compile(r"\s*(?:async\s+def|def|class)\s+[A-Za-z_]")
STRING = re.compile(r"'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"")
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PART = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
KEYWORDS = frozenset({"def", "class", "async", "self", "cls", "return", "None", "True", "False", "lambda"})
MAX_HEADER_LINES = 8  # a header's continuation lines kept (a long signature)
Headers = tuple[tuple[int, str], ...]  # (indentation, header text) of the enclosing scopes, nearest first


def enclosing_headers(lines: Sequence[str]) -> Headers:
    """The `def`/`class` headers enclosing the place after the last of `lines` (the lines above it, in
    order), nearest first, each with its indentation and its continuation lines."""
    return tuple((ind, _with_continuation(lines, i)) for i, ind in _enclosing(lines) if HEADER.match(lines[i]))


def _enclosing(lines: Sequence[str], *, limit: int = 2000) -> list[tuple[int, int]]:
    """(index, indentation) of the lines that open the scopes enclosing the place after the last of
    `lines`, nearest first: a line indented less than every non-blank line below it, up to the place
    (a line that starts by closing a bracket continues the statement above). At most `limit` lines."""
    out: list[tuple[int, int]] = []
    threshold = None
    for i in range(len(lines) - 1, max(0, len(lines) - limit) - 1, -1):
        line = lines[i]
        code = line.strip()
        if not code or code[0] in ")]}#":  # a comment's indentation says nothing about scopes
            continue
        ind = indent(line)
        if threshold is not None and ind >= threshold:
            continue
        threshold = ind
        out.append((i, ind))
        if ind == 0:
            break
    return out


def header_for(headers: Headers, indent: int) -> str:
    """The nearest header of a line indented `indent` (one indented less), or ""."""
    return next((text for ind, text in headers if ind < indent), "")


def adapt(draft: str, draft_header: str, hole_header: str, known: Collection[str] = ()) -> str:
    """The draft with the names of its place renamed to the hole's (module docstring); unchanged when the
    headers are the same or do not align. `known`: the words of the hole's file; a word it holds is not
    renamed to one it does not hold (`request_validator` stays, though `request` → `access` elsewhere)."""
    names, parts = renamings(draft_header, hole_header)
    if not names:
        return draft

    def one(m: re.Match) -> str:
        word = m.group(0)
        new = _renamed(word, names, parts)
        return word if word in known and new not in known else new

    return WORD.sub(one, draft)


def renamings(src: str, dst: str) -> tuple[dict[str, str], dict[str, str]]:
    """(whole identifiers, identifier parts) renamed from header `src` to header `dst`: the pairs of
    differing words where the two headers' word sequences align one to one."""
    a, b = WORD.findall(src), WORD.findall(dst)
    if a[:1] != b[:1]:  # a def against a class: nothing to align
        return {}, {}
    names: dict[str, str] = {}
    for op, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "replace" and i2 - i1 == j2 - j1:
            for x, y in zip(a[i1:i2], b[j1:j2]):
                if x not in KEYWORDS and y not in KEYWORDS:
                    names.setdefault(x, y)
    parts: dict[str, str] = {}
    for x, y in names.items():
        px, py = PART.findall(x), PART.findall(y)
        if len(px) == len(py):
            for p, q in zip(px, py):
                if p != q and not p.isdigit():  # `v1` → `v2` must not turn `sha1` into `sha2`
                    parts.setdefault(p, q)
    return names, parts


def _renamed(word: str, names: dict[str, str], parts: dict[str, str]) -> str:
    """A word renamed whole; else where it holds a renamed name between underscores (`_catch_errors`); else
    part by part when it has several parts (a lone part such as `get` is too common to rename)."""
    if word in names:
        return names[word]
    for x, y in names.items():
        if len(x) >= 3 and x in word:
            new = re.sub(rf"(?<![A-Za-z0-9]){re.escape(x)}(?![A-Za-z0-9])", y, word)
            if new != word:
                return new
    if len(PART.findall(word)) < 2:
        return word
    return PART.sub(lambda m: parts.get(m.group(0), m.group(0)), word)


def _with_continuation(lines: Sequence[str], i: int) -> str:
    """Line i and the lines that continue it while its brackets are open."""
    return " ".join(line.strip() for line in lines[i : i + _header_length(lines, i)])


def _header_length(lines: Sequence[str], i: int) -> int:
    """How many lines the statement starting at line i spans while its brackets are open (at most
    MAX_HEADER_LINES)."""
    depth = 0
    for n, line in enumerate(lines[i : i + MAX_HEADER_LINES], 1):
        code = code_of(line)
        depth += sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")
        if depth <= 0:
            return n
    return min(MAX_HEADER_LINES, len(lines) - i)


def code_of(line: str) -> str:
    """The line without its string literals' contents and its comment."""
    return STRING.sub('""', line).split("#", 1)[0].rstrip()


def indent(line: str) -> int:
    """The width of a line's leading spaces and tabs."""
    return len(line) - len(line.lstrip(" \t"))

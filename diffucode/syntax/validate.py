"""Validate a splice (candidate text replacing [start, end)) and repair failing candidates.

Only the enclosing unit is re-checked, not the whole file: the engine validates 16 candidates per
request and a full reparse + compile of a 2,000-line file costs 15-30 ms each, while a unit (the
statements the edit touches, inside a wrapper that mirrors their nesting) costs well under 1 ms.

Python gets two checks, because tree-sitter-python is lenient (bad indentation, `try:` without
`except`, `return` outside a function all parse without errors): the ERROR/MISSING count of the unit
must not rise, and the unit must still compile() if it compiled before the edit. The unit is wrapped
in header lines that mirror its ancestors (`def _():` for a function, `while 1:` for a loop,
`if 1:` for other blocks, at the ancestors' own indentation) so that `return`, `break`, `await` and
indentation are judged as in the real file, plus `pass` sentinels at the indentation of the code
right before and after it, so that a candidate which shifts indentation is caught.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass

import tree_sitter as ts

from diffucode.syntax._text import TextIndex, check_range
from diffucode.syntax._tree import (
    Parsed,
    code_line_after,
    code_line_before,
    count_errors,
    parse,
    parse_bytes,
    statements_of,
)
from diffucode.syntax.languages import LanguageSpec, spec_for

__all__ = ["Validation", "validate_splice", "repair_splice"]


@dataclass(frozen=True)
class Validation:
    """ok: whether the candidate may be used. reason: why not (or a caveat when ok).
    errors_*: ERROR/MISSING node counts in the enclosing unit before and after the splice."""

    ok: bool
    reason: str = ""
    errors_before: int = 0
    errors_after: int = 0


@dataclass(frozen=True)
class _Unit:
    start: int  # source region covered (str offsets, whole lines)
    end: int
    header: str  # wrapper lines and the leading sentinel, prepended to the region
    tail: str  # trailing sentinel ("" if none)
    first_line: int  # 1-based line number of `start` in the file


@dataclass(frozen=True)
class _Plan:
    unit: _Unit
    errors_before: int
    compile_before: str | None  # compile() error message before the edit; None when it compiled
    python: bool
    extend_from: int | None  # start of a previous compound sibling that indented text may continue


_ON_LINE = re.compile(r"on line (\d+)")


def _wrap(source: str, unit: _Unit, start: int, end: int, new_text: str) -> str:
    body = source[unit.start : start] + new_text + source[end : unit.end]
    if unit.tail and not body.endswith("\n"):
        body += "\n"
    return unit.header + body + unit.tail


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _compile_error(text: str, unit: _Unit) -> str | None:
    """compile() the wrapped unit; None if it compiles, else a one-line message with a file line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences etc. are not our verdict
        try:
            compile(text, "<unit>", "exec", dont_inherit=True)
            return None
        except SyntaxError as exc:
            shift = unit.first_line - 1 - unit.header.count("\n")  # unit line -> file line

            def file_line(match: re.Match[str]) -> str:
                return f"on line {max(1, int(match.group(1)) + shift)}"

            message = _ON_LINE.sub(file_line, str(exc.msg))
            if exc.lineno is not None:
                message += f" near line {max(1, exc.lineno + shift)}"
            return message
        except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
            return str(exc) or type(exc).__name__


# -- choosing the unit ------------------------------------------------------------------------------


def _container(parsed: Parsed, start: int, end: int) -> ts.Node:
    """Deepest block whose whole-line extent holds [start, end] and whose statements own their lines."""
    index = parsed.index
    spec = parsed.spec
    probe = start
    if end > start:
        # Probe from the first code in the range: comment lines above a statement can hang on a
        # different parent than the statement, and the container must be an ancestor of the probe.
        code = code_line_after(parsed, index.line_start(start))
        if code is not None and code < end:
            probe = max(start, code + len(index.indent_at(code)))
    node: ts.Node | None = parsed.root.descendant_for_byte_range(index.to_byte(probe), index.to_byte(max(probe, end)))
    while node is not None and node.parent is not None:
        if node.type in spec.blocks and not (node.type in spec.compounds and node.parent.type in spec.blocks):
            s, e = parsed.span(node)
            owner = node.parent
            lead = node.prev_sibling  # tree-sitter-python hangs comments above a body on its owner
            while lead is not None and lead.type in spec.comments:
                s = index.to_str(lead.start_byte)
                lead = lead.prev_sibling
            first = index.line_start(s)
            header_line = index.line_start(index.to_str(owner.start_byte))
            if first <= start and end <= index.line_end(e) and first != header_line:
                return node
        node = node.parent
    return parsed.root


def _region(parsed: Parsed, items: list[ts.Node], start: int, end: int) -> tuple[int, int, list[int]]:
    """Whole-line region covering [start, end) and the items it touches (indices into items)."""
    index = parsed.index
    touched = []
    for k, item in enumerate(items):
        a = index.line_start(index.to_str(item.start_byte))
        b = index.line_end(index.to_str(item.end_byte))
        if (a < end and b > start) if start < end else (a < start < b):
            touched.append(k)
    u0 = index.line_start(start)
    u1 = end if end == index.line_start(end) and end > u0 else index.line_end(end)
    if start == end and start == index.line_start(start):
        u1 = start  # a bare insertion at a line start touches no line
    if touched:
        u0 = min(u0, index.line_start(index.to_str(items[touched[0]].start_byte)))
        u1 = max(u1, index.line_end(index.to_str(items[touched[-1]].end_byte)))
    return u0, u1, touched


_LOOPS = frozenset({"for_statement", "while_statement"})


def _python_header(parsed: Parsed, container: ts.Node) -> tuple[str, list[str]]:
    """Wrapper lines mirroring the blocks from the module down to `container`, and their body indents."""
    index = parsed.index
    lines: list[str] = []
    levels: list[str] = [""]
    block: ts.Node | None = container
    while block is not None and block.parent is not None:
        if block.type == "block":
            owner = block.parent
            indent = index.indent_at(index.to_str(owner.start_byte))
            if owner.type == "function_definition":
                is_async = owner.children and owner.children[0].type == "async"
                text = "async def _():" if is_async else "def _():"
            elif owner.type == "class_definition":
                text = "class _:"
            elif owner.type in _LOOPS:
                text = "while 1:"
            else:
                text = "if 1:"
            lines.append(indent + text + "\n")
            items = statements_of(block, parsed.spec)
            if items:
                levels.append(index.indent_at(index.to_str(items[0].start_byte)))
        block = block.parent
    lines.reverse()
    return "".join(lines), levels


def _python_units(parsed: Parsed, start: int, end: int):
    """Units from the innermost block outwards: (unit, previous-compound start or None)."""
    index = parsed.index
    spec = parsed.spec
    source = parsed.text
    container = _container(parsed, start, end)
    cover_start, cover_end = start, end
    while True:
        items = statements_of(container, spec)
        u0, u1, touched = _region(parsed, items, cover_start, cover_end)
        header, levels = _python_header(parsed, container)
        if container.parent is not None and len(touched) < len(items):
            outside = next((items[k] for k in range(len(items)) if k not in touched), None)
            if outside is not None:
                header += index.indent_at(index.to_str(outside.start_byte)) + "pass\n"
        tail = ""
        nxt = code_line_after(parsed, u1) if u1 < len(source) else None
        if nxt is not None:
            indent = index.indent_at(nxt)
            if indent and indent in levels:
                tail = indent + "pass\n"
        extend_from = None
        before = [k for k in range(len(items)) if index.to_str(items[k].end_byte) <= u0]
        if before:
            prev = items[before[-1]]
            prev_line = code_line_before(parsed, u0) if u0 > 0 else None
            if prev.type in spec.compounds and prev_line is not None and \
                    index.line_start(index.to_str(prev.end_byte)) == prev_line:
                extend_from = index.line_start(index.to_str(prev.start_byte))
        yield _Unit(u0, u1, header, tail, source.count("\n", 0, u0) + 1), extend_from
        if container.parent is None:
            return
        owner = container.parent
        while owner is not None and not (owner.parent is not None and owner.parent.type in spec.blocks):
            owner = owner.parent
        if owner is None:
            return
        cover_start = min(start, index.to_str(owner.start_byte))
        cover_end = max(end, index.to_str(owner.end_byte))
        container = owner.parent


def _generic_unit(parsed: Parsed, start: int, end: int) -> _Unit:
    """Top-level items of the file that the edit touches, parsed on their own (non-Python)."""
    items = [c for c in parsed.root.named_children if c.type not in parsed.spec.comments]
    u0, u1, _ = _region(parsed, items, start, end)
    return _Unit(u0, u1, "", "", parsed.text.count("\n", 0, u0) + 1)


@functools.lru_cache(maxsize=64)
def _plan(source: str, start: int, end: int, name: str, extended: bool = False) -> _Plan | None:
    spec, _ = spec_for(name)
    assert spec is not None
    parsed = parse(source, spec)
    original = source[start:end]
    if spec.name != "python":
        unit = _generic_unit(parsed, start, end)
        tree = parse_bytes(_encode(_wrap(source, unit, start, end, original)), spec)
        return _Plan(unit, count_errors(tree.root_node), None, False, None)
    chosen: tuple[_Unit, int | None, str | None] | None = None
    for unit, extend_from in _python_units(parsed, start, end):
        if extended:
            if extend_from is None:
                return None
            unit = _Unit(extend_from, unit.end, unit.header, unit.tail, source.count("\n", 0, extend_from) + 1)
            extend_from = None
        error = _compile_error(_wrap(source, unit, start, end, original), unit)
        chosen = (unit, extend_from, error)
        if error is None or extended:
            break
    assert chosen is not None
    unit, extend_from, error = chosen
    tree = parse_bytes(_encode(_wrap(source, unit, start, end, original)), spec)
    return _Plan(unit, count_errors(tree.root_node), error, True, extend_from)


def _check(source: str, start: int, end: int, new_text: str, plan: _Plan, spec: LanguageSpec, *,
           must_compile: bool = False) -> Validation:
    """The verdict on the unit with the new text. must_compile: compile it even if it did not compile before."""
    text = _wrap(source, plan.unit, start, end, new_text)
    after = count_errors(parse_bytes(_encode(text), spec).root_node)
    if after > plan.errors_before:
        return Validation(False, f"syntax errors rise from {plan.errors_before} to {after} in the enclosing unit",
                          plan.errors_before, after)
    if plan.python:
        if plan.compile_before is not None and not must_compile:
            return Validation(True, "compile check skipped: the enclosing unit did not compile before the edit",
                              plan.errors_before, after)
        error = _compile_error(text, plan.unit)
        if error is not None:
            return Validation(False, f"does not compile: {error}", plan.errors_before, after)
    return Validation(True, "", plan.errors_before, after)


def validate_splice(source: str, start: int, end: int, new_text: str, *, language: str | None = "python") -> Validation:
    """Check that replacing source[start:end] with new_text does not break the syntax around it.

    Rejects when the ERROR/MISSING count of the enclosing unit rises, and for Python when a unit that
    compiled before no longer compiles. A unit that did not compile before the edit (a broken file,
    Python 2 code) skips the compile check instead of failing every candidate: see `reason`.
    Unknown language: ok=True, reason "no grammar". Raises SpanError for a range that does not fit.
    """
    check_range(source, start, end, "splice")
    spec, _ = spec_for(language)
    if spec is None:
        return Validation(True, "no grammar")
    if end < len(source) and (end == 0 or source[end - 1] == "\n") and not new_text.endswith("\n"):
        # The candidate glues onto the next line (`y = 2` replacing `y = 1\n`): judge the equivalent
        # splice that also rewrites that line, so that the line is inside the unit.
        nl = source.find("\n", end)
        line_end = len(source) if nl < 0 else nl + 1
        if source[end:line_end].strip():
            new_text += source[end:line_end]
            end = line_end
    plan = _plan(source, start, end, spec.name)
    assert plan is not None
    verdict = _check(source, start, end, new_text, plan, spec)
    if verdict.ok or plan.extend_from is None:
        return verdict
    # Text starting a line deeper than its block may continue the compound statement above it
    # (a new last line of the function before): judge it once more with that statement included. That
    # statement may not compile without the text (a block header whose body is the hole): then it must
    # compile with it.
    extended = _plan(source, start, end, spec.name, True)
    if extended is None:
        return verdict
    second = _check(source, start, end, new_text, extended, spec, must_compile=True)
    return second if second.ok else verdict


# -- repair -------------------------------------------------------------------------------------------

_TOKEN_CUT = re.compile(r"\s+|[()\[\]{},;:]|[A-Za-z_0-9]+|.", re.S)
_MAX_TRIES = 160


def _context_indent(index: TextIndex, start: int, end: int) -> str | None:
    """Indentation the hole's lines should have, read from the text around the hole."""
    text = index.text
    before = text[index.line_start(start) : start]
    if before.strip():
        return None  # mid-line: re-indenting is not meaningful
    if before:
        return before
    replaced = text[start:end]
    for line in replaced.split("\n"):
        if line.strip():
            return line[: len(line) - len(line.lstrip(" \t"))]
    nxt = text.find("\n", start)
    line = text[start : len(text) if nxt < 0 else nxt]
    if line.strip():
        return line[: len(line) - len(line.lstrip(" \t"))]
    return None


def _reindent(text: str, target: str, first_prefix: str) -> str:
    """Shift text so that its shallowest line sits at `target`; the first line already follows
    `first_prefix` (the whitespace before the hole on its line)."""
    lines = text.split("\n")
    virtual = [first_prefix + lines[0]] + lines[1:]
    indents = [ln[: len(ln) - len(ln.lstrip(" \t"))] for ln in virtual if ln.strip()]
    if not indents:
        return text
    common = min(indents, key=len)
    out = []
    for ln in virtual:
        if ln.strip():
            ln = target + (ln[len(common) :] if ln.startswith(common) else ln.lstrip(" \t"))
        out.append(ln)
    first = out[0]
    if not first.startswith(first_prefix):
        return text
    out[0] = first[len(first_prefix) :]
    return "\n".join(out)


def _line_end(source: str, start: int, end: int) -> str:
    """The line end a fill of [start, end) must keep ("" when none): that of the replaced lines, or for an
    insertion at the start of a line before the end of the file (new lines above it), the file's own: that
    of the line it pushes down, else of the line above (infill.fit_to_file gives unrepaired fills one too)."""
    replaced = source[start:end]
    if replaced:
        return "\r\n" if replaced.endswith("\r\n") else "\n" if replaced.endswith("\n") else ""
    if not (start == 0 or source[start - 1] == "\n") or start == len(source):
        return ""
    below = source.find("\n", start)
    crlf = source[below - 1 : below] == "\r" if below > 0 else source[max(0, start - 2) : start] == "\r\n"
    return "\r\n" if crlf else "\n"


def repair_splice(source: str, start: int, end: int, new_text: str, *, language: str | None = "python") -> str | None:
    """Repair a candidate that failed validation; return the repaired text or None.

    Tries, in order: (a) the longest prefix of new_text that validates, cutting at line ends first
    (a diffusion sampler's typical failure is a good start followed by a broken tail), then at token
    boundaries within the last line; (b) new_text re-indented to the indentation of the hole's line;
    (c) the longest line prefix of the re-indented text. Empty or whitespace-only results are never
    returned (they would silently delete the span). At most a bounded number of validations are run.
    """
    check_range(source, start, end, "splice")
    spec, _ = spec_for(language)
    if spec is None:
        return None
    tries = 0

    def valid(candidate: str) -> bool:
        nonlocal tries
        tries += 1
        return bool(candidate.strip()) and validate_splice(source, start, end, candidate, language=language).ok

    def line_prefixes(text: str) -> list[str]:
        cuts = [k + 1 for k, ch in enumerate(text) if ch == "\n" and k + 1 < len(text)]
        return [text[:k] for k in reversed(cuts)]

    for candidate in line_prefixes(new_text):
        if tries >= _MAX_TRIES:
            return None
        if valid(candidate):
            return candidate
    # A hole of whole lines keeps its line end: a token cut of its last line gets the newline back.
    newline = _line_end(source, start, end)
    last_line_start = new_text.rfind("\n", 0, len(new_text) - 1) + 1
    cuts = [m.end() for m in _TOKEN_CUT.finditer(new_text, last_line_start)][:-1]
    seen = set()
    for k in reversed(cuts):
        if tries >= _MAX_TRIES:
            return None
        candidate = new_text[:k].rstrip(" \t") + newline if newline else new_text[:k]
        if candidate in seen:
            continue
        seen.add(candidate)
        if valid(candidate):
            return candidate
    target = _context_indent(TextIndex(source), start, end)
    if target is not None:
        prefix = source[source.rfind("\n", 0, start) + 1 : start]
        shifted = _reindent(new_text, target, prefix)
        if shifted != new_text:
            if valid(shifted):
                return shifted
            for candidate in line_prefixes(shifted):
                if tries >= _MAX_TRIES:
                    return None
                if valid(candidate):
                    return candidate
    return None

"""Snap a requested range to syntax: the region the infill engine should mask and regenerate.

A user's selection rarely lands on node boundaries. Regenerating a region that is not a whole
syntactic unit forces the model to produce half an expression that must glue onto the remaining
half, which masked-diffusion models do poorly; a whole expression, statement or run of statements
is something they were trained to produce.
"""

from __future__ import annotations

from dataclasses import dataclass

import tree_sitter as ts

from diffucode.syntax._text import check_range
from diffucode.syntax._tree import (
    Parsed,
    block_owner,
    comment_lines_above,
    errors_overlap,
    is_statement,
    parse,
    statements_of,
)
from diffucode.syntax.languages import spec_for

__all__ = ["Snap", "snap", "SNAP_KINDS"]

SNAP_KINDS = ("expression", "statement", "statements", "block", "lines")


@dataclass(frozen=True)
class Snap:
    """A snapped region [start, end) in str offsets.

    kind: "expression" (exact node span), "statement" / "statements" (one / a run of sibling
    statements, whole lines), "block" (every statement of a body, whole lines) or "lines" (the raw
    whole lines of the request: the fallback). requested_*: the range as asked, for diagnostics and
    for front ends that show what moved. note: why a fallback or an adjustment happened ("" if none).
    """

    start: int
    end: int
    kind: str
    requested_start: int
    requested_end: int
    note: str = ""


def _lines_snap(parsed_text: str, start: int, end: int, note: str) -> Snap:
    line_start = parsed_text.rfind("\n", 0, start) + 1
    if end > start and parsed_text[end - 1] == "\n":
        line_end = end
    else:
        nl = parsed_text.find("\n", end)
        line_end = len(parsed_text) if nl < 0 else nl + 1
    return Snap(line_start, line_end, "lines", start, end, note)


def snap(source: str, start: int, end: int, *, language: str | None = "python") -> Snap:
    """Snap [start, end) to the syntactic region that best matches it.

    1. Trim surrounding whitespace; find the smallest named node covering the selection.
    2. A block (module, body, {...}): the run of sibling statements the selection touches.
       Otherwise climb to the first expression or statement; through same-span parents, prefer the
       outer one (a call that is a whole statement is the statement). A selection that is aligned to
       its lines (only whitespace around it on its first and last line, or a bare caret) goes on to
       statement level: line selections (CLI `FILE:10-20`) mean "these lines".
    3. Statements become whole lines, from the line start (indentation included) to the newline
       included, with the comments directly above (same indentation, no blank line between).
       Decorators, `export` and `template<>` come along because the wrapper is the statement.
       A statement sharing its line with a sibling (`a = 1; b = 2`) takes the sibling along; one
       sharing it with its parent's header (`if x: return 1`) becomes the parent.
    4. Fall back to the request's whole lines when the language has no grammar or when the region
       already holds syntax errors (tree-sitter's recovery makes node boundaries there unreliable).

    Raises SpanError for a range that does not fit `source`.
    """
    check_range(source, start, end, "selection")
    spec, why = spec_for(language)
    if spec is None:
        return _lines_snap(source, start, end, f"{why}: snapped to whole lines")
    parsed = parse(source, spec)
    index = parsed.index

    a, b = start, end
    while a < b and source[a].isspace():
        a += 1
    while b > a and source[b - 1].isspace():
        b -= 1
    caret = a == b
    if caret:
        line_start, line_stop = index.line_start(a), index.line_content_end(a)
        if not source[line_start:line_stop].strip():
            return _lines_snap(source, start, end, "empty selection on a blank line: snapped to whole lines")
        if not source[line_start:a].strip():  # caret in the indentation: use the line's first token
            a = b = line_start + len(index.indent_at(a))
    sel_a, sel_b = index.to_byte(a), index.to_byte(b)
    aligned = caret or (not source[index.line_start(a) : a].strip() and _only_comment_after(parsed, b))

    line_a, line_b = index.whole_lines(a, b)
    if errors_overlap(parsed.root, index.to_byte(line_a), index.to_byte(line_b)):
        return _lines_snap(source, start, end, "region already has syntax errors: snapped to whole lines")
    node = parsed.root.named_descendant_for_byte_range(sel_a, sel_b)
    choice = _choose(parsed, node, sel_a, sel_b, aligned, caret)
    if isinstance(choice, str):
        return _lines_snap(source, start, end, choice + ": snapped to whole lines")
    if choice[0] == "expression":
        n = choice[1]
        s, e = parsed.span(n)
        if n.has_error or errors_overlap(parsed.root, n.start_byte, n.end_byte):
            return _lines_snap(source, start, end, "region already has syntax errors: snapped to whole lines")
        return Snap(s, e, "expression", start, end, "")
    _, container, first, last = choice
    return _finish_run(parsed, container, first, last, start, end, (a, b))


def _only_comment_after(parsed: Parsed, offset: int) -> bool:
    rest = parsed.text[offset : parsed.index.line_content_end(offset)].strip()
    return not rest or rest.startswith(parsed.spec.line_comment)


def _choose(parsed: Parsed, node: ts.Node | None, sel_a: int, sel_b: int, aligned: bool, caret: bool):
    """("expression", node) | ("run", container, first, last) | a note string for the line fallback."""
    spec = parsed.spec
    n = node
    while n is not None:
        if n.type in spec.blocks and not is_statement(n, spec):
            items = statements_of(n, spec)
            if caret:
                touched = [s for s in items if s.start_byte <= sel_a <= s.end_byte]
            else:
                touched = [s for s in items if s.start_byte < sel_b and s.end_byte > sel_a]
            if not touched:
                return "selection holds no statement"
            if _selects_delimiters(n, items, sel_a, sel_b) and n.parent is not None:
                n = n.parent
                continue
            return ("run", touched[0].parent, touched[0], touched[-1])
        if n.type in spec.comments:
            n = n.parent
            continue
        if is_statement(n, spec):
            if n.type in spec.blocks and _selects_inside(n, spec, sel_a, sel_b):
                # A `{ ... }` statement whose statements (not braces) are selected: treat as a block.
                items = statements_of(n, spec)
                touched = [s for s in items if s.start_byte < sel_b and s.end_byte > sel_a]
                if touched:
                    return ("run", n, touched[0], touched[-1])
            return ("run", n.parent, n, n)
        if n.type in spec.expressions and not aligned:
            while (
                n.parent is not None
                and n.parent.start_byte == n.start_byte
                and n.parent.end_byte == n.end_byte
                and (n.parent.type in spec.expressions or is_statement(n.parent, spec))
            ):
                n = n.parent
            if is_statement(n, spec):
                return ("run", n.parent, n, n)
            return ("expression", n)
        n = n.parent
    return "no syntactic unit covers the selection"


def _selects_delimiters(block: ts.Node, items: list[ts.Node], sel_a: int, sel_b: int) -> bool:
    """Whether the selection reaches a block's own delimiters (`{`, `}`): then it means the owner."""
    children = block.children
    if not children or children[0].is_named:
        return False
    opening, closing = children[0], children[-1]
    return sel_a < opening.end_byte or (not closing.is_named and sel_b > closing.start_byte)


def _selects_inside(block: ts.Node, spec, sel_a: int, sel_b: int) -> bool:
    children = block.children
    if not children or children[0].is_named:
        return False
    return sel_a >= children[0].end_byte and sel_b <= children[-1].start_byte


def _only_comments(parsed: Parsed, start: int, end: int) -> bool:
    """Whether the whole lines in [start, end) are blank or line comments."""
    prefix = parsed.spec.line_comment
    return all(not line.strip() or line.strip().startswith(prefix) for line in parsed.text[start:end].split("\n"))


def _finish_run(parsed: Parsed, container: ts.Node, first: ts.Node, last: ts.Node, req_start: int,
                req_end: int, sel: tuple[int, int]) -> Snap:
    """Grow a run of sibling statements until it owns whole lines, then add the comments above."""
    container, first, last, note = _own_lines(parsed, container, first, last)
    index = parsed.index
    s = index.to_str(first.start_byte)
    e = index.to_str(last.end_byte)
    if errors_overlap(parsed.root, first.start_byte, last.end_byte):
        return _lines_snap(parsed.text, req_start, req_end, "region already has syntax errors: snapped to whole lines")
    if not note.startswith("statement shares its line with other code"):
        s, e = _with_comment_lines(parsed, s, e, sel)
    return Snap(s, e, _run_kind(parsed, container, first, last), req_start, req_end, note)


def _own_lines(parsed: Parsed, container: ts.Node, first: ts.Node,
               last: ts.Node) -> tuple[ts.Node, ts.Node, ts.Node, str]:
    """(container, first, last, note): the run grown by the siblings sharing its first and last line, or
    climbed to the statement whose header shares its line; the note says which adjustment happened."""
    spec = parsed.spec
    index = parsed.index
    note = ""
    for _ in range(64):  # each round grows the run or climbs a level; nesting depth bounds it
        siblings = statements_of(container, spec) if container.type in spec.blocks else [first]
        s = index.to_str(first.start_byte)
        e = index.to_str(last.end_byte)
        before_ok = not parsed.text[index.line_start(s) : s].strip()
        after_ok = _only_comment_after(parsed, e)
        if before_ok and after_ok:
            break
        ids = [x.id for x in siblings]
        i = ids.index(first.id) if first.id in ids else 0
        j = ids.index(last.id) if last.id in ids else len(siblings) - 1
        grown = False
        if not before_ok and i > 0 and index.line_start(index.to_str(siblings[i - 1].end_byte)) == index.line_start(s):
            first, grown = siblings[i - 1], True
        if not after_ok and j + 1 < len(siblings) and \
                index.line_start(index.to_str(siblings[j + 1].start_byte)) == index.line_start(e):
            last, grown = siblings[j + 1], True
        if grown:
            continue
        owner = container if is_statement(container, spec) else block_owner(container, spec)
        while owner is not None and not is_statement(owner, spec):
            owner = owner.parent
        if owner is None:
            note = "statement shares its line with other code: kept its exact span"
            break
        first = last = owner
        container = owner.parent
        note = "statement shares its line with its parent's header: snapped to the parent"
    return container, first, last, note


def _with_comment_lines(parsed: Parsed, s: int, e: int, sel: tuple[int, int]) -> tuple[int, int]:
    """[s, e) as whole lines, with the comments directly above and the comment lines `sel` reaches."""
    index = parsed.index
    s = comment_lines_above(parsed, s)
    s, e = index.line_start(s), index.line_end(e)
    # Comment and blank lines the selection reaches beyond the statements come along, so that
    # the snapped region always covers what was asked for (`FILE:10-20` regenerates lines 10-20).
    sel_start, sel_end = index.whole_lines(sel[0], sel[1])
    if sel_start < s and _only_comments(parsed, sel_start, s):
        s = sel_start
    if sel_end > e and _only_comments(parsed, e, sel_end):
        e = sel_end
    return s, e


def _run_kind(parsed: Parsed, container: ts.Node, first: ts.Node, last: ts.Node) -> str:
    """The run's kind: "statement" (one), "block" (every statement of a body) or "statements"."""
    spec = parsed.spec
    siblings = statements_of(container, spec) if container.type in spec.blocks else [first]
    if first.id == last.id:
        return "statement"
    if (
        len(siblings) >= 2
        and siblings[0].id == first.id
        and siblings[-1].id == last.id
        and container.parent is not None
    ):
        return "block"
    return "statements"

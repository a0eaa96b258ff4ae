"""Decide what kind of hole a cursor opens: the rest of a line, an expression, a statement, or a body.

The kind drives the length prior and the stop rule of the infill engine: an expression after `x = `
should stop at the end of the line, a function body after a docstring may run for many lines. The
field notes measured that a wrong length costs far more than a weak model (17 % vs 4 % pass), so
this cheap structural guess is worth getting right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tree_sitter as ts

from diffucode.syntax._text import check_range
from diffucode.syntax._tree import Parsed, code_line_after, code_line_before, parse, statements_of
from diffucode.syntax.languages import LanguageSpec, spec_for

__all__ = ["Hole", "hole_at_cursor", "HOLE_KINDS"]

HOLE_KINDS = ("line_rest", "expression", "statement", "block_body")
_MAX_LINES = {"line_rest": 1, "expression": 1, "statement": None, "block_body": None}

# Text endings after which an expression must follow (operators, openers, separators).
_OPERATOR_END = re.compile(r"(?:[=+\-*/%&|^<>!~@(\[{,?]|:=|=>|->|\band\b|\bor\b|\bnot\b)$")
_WORD_CHAR = re.compile(r"\w")
_CLOSERS = set(")]}\"'`;,:")
_PY_HEADER = re.compile(
    r"^\s*(?:async\s+)?(?:def|class|if|elif|else|for|while|with|try|except|finally|match|case)\b.*:\s*(?:#.*)?$"
)
_DOCSTRING_HOSTS = frozenset({"function_definition", "class_definition"})


@dataclass(frozen=True)
class Hole:
    """Where generated text goes: replace [start, end) (usually start == end == cursor, an insertion).

    kind: "line_rest" (finish this line), "expression" (one expression is expected here),
    "statement" (a new statement on its own line) or "block_body" (the body of the block or function
    just opened). max_lines: how many lines the text may span; 1 for line_rest and expression,
    None where syntax gives no bound (the engine's own length cap applies).
    end > start only when text after the cursor on its line is to be replaced: trailing whitespace,
    or the rest of a word the cursor splits (`compu|te(x)`: the model rewrites the rest of the line).
    """

    start: int
    end: int
    kind: str
    max_lines: int | None = None

    def token_budget(self, cap: int) -> int:
        """Tokens to generate for this kind of hole, at most `cap`: a line's rest or an expression needs few,
        a block body up to the cap."""
        return min(cap, _TOKEN_BUDGET.get(self.kind, cap))


_TOKEN_BUDGET = {"line_rest": 32, "expression": 32, "statement": 48}


def _hole(start: int, end: int, kind: str) -> Hole:
    return Hole(start, end, kind, _MAX_LINES[kind])


def hole_at_cursor(source: str, cursor: int, *, language: str | None = "python") -> Hole:
    """Classify the hole at `cursor` from the text and tree around it.

    On a blank line: inside brackets -> expression; right after a block header (`def f():`, `if x {`)
    or after a def/class whose body so far is only its docstring, with no deeper code below ->
    block_body; otherwise -> statement. On a code line: in the indentation -> statement; inside a
    string or comment -> line_rest; after an operator, opener, separator or a keyword such as
    `return` -> expression; otherwise -> line_rest. Unknown languages use the textual rules only.
    Raises SpanError when the cursor is outside the text.
    """
    check_range(source, cursor, cursor, "cursor")
    spec, _ = spec_for(language)
    parsed = parse(source, spec) if spec is not None else None
    line_start = source.rfind("\n", 0, cursor) + 1
    nl = source.find("\n", cursor)
    line_stop = len(source) if nl < 0 else nl
    if line_stop > line_start and source[line_stop - 1] == "\r":
        line_stop -= 1
    before = source[line_start:cursor]
    after = source[cursor:line_stop] if cursor <= line_stop else ""

    if not before.strip() and not after.strip():
        return _hole(cursor, cursor, _blank_line_kind(parsed, source, cursor))
    if not before.strip():
        return _hole(cursor, cursor, "statement")

    end = cursor
    if not after.strip():
        end = line_stop  # replace trailing whitespace
    elif before[-1:] and _WORD_CHAR.match(before[-1]) and _WORD_CHAR.match(after[0]):
        end = line_stop  # the cursor splits a word: regenerate the rest of the line
    if parsed is not None and _in_string_or_comment(parsed, cursor):
        return _hole(cursor, end if not after.strip() else cursor, "line_rest")
    if _expects_expression(before, spec, parsed, cursor):
        if after.strip() and all(ch in _CLOSERS or ch.isspace() for ch in after):
            end = cursor  # keep the closers the line already has
        return _hole(cursor, end, "expression")
    if parsed is not None and _ends_header(parsed, cursor) and not after.strip():
        # `if x:|` at the end of a header: its body, unless one already follows below.
        return _hole(cursor, end, "statement" if _body_below(parsed, source, cursor) else "block_body")
    return _hole(cursor, end, "line_rest")


def _expects_expression(before: str, spec: LanguageSpec | None, parsed: Parsed | None, cursor: int) -> bool:
    stripped = before.rstrip()
    if not stripped:
        return False
    if stripped.endswith(":"):
        # In Python a trailing colon is a block header unless it is inside brackets/lambda/annotation.
        if spec is None or spec.name != "python":
            return True
        return not _PY_HEADER.match(stripped) and not (parsed is not None and _ends_header(parsed, cursor))
    if _OPERATOR_END.search(stripped):
        if stripped.endswith(("++", "--")) and (spec is None or spec.name != "python"):
            return False  # `i++` is complete
        if stripped.endswith("{") and (spec is None or spec.name != "python"):
            # A block opener unless the tree says it opens an object/initializer literal.
            return parsed is not None and not _ends_header(parsed, cursor)
        return True
    words = stripped.split()
    keywords = spec.expr_keywords if spec is not None else frozenset({"return", "yield", "await"})
    return before != stripped and words[-1] in keywords


def _in_string_or_comment(parsed: Parsed, cursor: int) -> bool:
    b = parsed.index.to_byte(cursor)
    node = parsed.root.descendant_for_byte_range(b, b)
    while node is not None:
        if node.type in parsed.spec.comments or node.type in ("string_content", "string_fragment"):
            return node.start_byte < b <= node.end_byte
        if node.type in ("string", "string_literal", "interpreted_string_literal", "template_string",
                         "raw_string_literal"):
            return node.start_byte < b < node.end_byte
        node = node.parent
    return False


def _inside_brackets(parsed: Parsed, cursor: int) -> bool:
    b = parsed.index.to_byte(cursor)
    node: ts.Node | None = parsed.root.descendant_for_byte_range(b, b)
    while node is not None:
        if node.type in parsed.spec.brackets and node.start_byte < b < node.end_byte:
            return True
        if node.type in parsed.spec.blocks:
            return False
        node = node.parent
    return False


def _ends_header(parsed: Parsed, offset: int) -> bool:
    """Whether the code before `offset` on its line ends with a block header token (`:` / `{`)."""
    index = parsed.index
    text = parsed.text
    line_start = index.line_start(offset)
    stop = offset
    head = text[line_start:stop]
    comment = head.find(parsed.spec.line_comment)
    while comment >= 0:  # drop a trailing line comment, if the tree agrees it is one
        b = index.to_byte(line_start + comment)
        node = parsed.root.descendant_for_byte_range(b, b + 1)
        if node is not None and node.type in parsed.spec.comments:
            head = head[:comment]
            break
        comment = head.find(parsed.spec.line_comment, comment + 1)
    head = head.rstrip()
    if not head or head[-1] not in ("{" if parsed.spec.name != "python" else ":"):
        return False
    b = index.to_byte(line_start + len(head) - 1)
    node = parsed.root.descendant_for_byte_range(b, b + 1)
    if node is None or node.type not in parsed.spec.headers:
        return False
    parent = node.parent
    if parent is None:
        return False
    if parent.type == "ERROR":
        return parsed.spec.name != "python" or bool(_PY_HEADER.match(head))
    if parsed.spec.name == "python":
        # The `:` of a compound statement is followed by its body (a block), not by an expression.
        nxt = node.next_sibling
        return parent.type not in ("lambda", "dictionary", "pair", "slice", "subscript", "typed_parameter") and (
            nxt is None or nxt.type in ("block", "comment")
        )
    return parent.type in parsed.spec.blocks


def _indent_width(line: str) -> int:
    width = 0
    for ch in line:
        if ch == " ":
            width += 1
        elif ch == "\t":
            width += 8 - width % 8
        elif ch == "\f":
            width = 0
        else:
            break
    return width


def _body_below(parsed: Parsed, source: str, offset: int) -> bool:
    """Whether the next code line after the line at `offset` is indented deeper than that line."""
    index = parsed.index
    line = index.line_start(offset)
    nxt = code_line_after(parsed, index.line_end(offset))
    if nxt is None:
        return False
    if parsed.spec.name != "python":
        return not source[nxt : index.line_content_end(nxt)].strip().startswith("}")
    return _indent_width(source[nxt:]) > _indent_width(source[line:])


def _blank_line_kind(parsed: Parsed | None, source: str, cursor: int) -> str:
    if parsed is None:
        return "statement"
    if _inside_brackets(parsed, cursor):
        return "expression"
    if _in_string_or_comment(parsed, cursor):
        return "line_rest"
    prev = code_line_before(parsed, cursor)
    if prev is None:
        return "statement"
    index = parsed.index
    prev_end = index.line_content_end(prev)
    nxt = code_line_after(parsed, index.line_end(cursor))
    if _ends_header(parsed, prev_end):
        return "statement" if _body_below(parsed, source, prev) else "block_body"
    if parsed.spec.name == "python" and _only_docstring_before(parsed, prev, prev_end, nxt):
        return "block_body"
    return "statement"


def _only_docstring_before(parsed: Parsed, prev: int, prev_end: int, nxt: int | None) -> bool:
    """Whether the code line before the cursor ends a def/class docstring that is its whole body so far."""
    index = parsed.index
    b = index.to_byte(prev_end) - 1
    node: ts.Node | None = parsed.root.descendant_for_byte_range(b, b + 1)
    while node is not None and node.type != "expression_statement":
        node = node.parent
    if node is None or node.named_child_count != 1 or node.named_children[0].type != "string":
        return False
    block = node.parent
    if block is None or block.type != "block" or block.parent is None or block.parent.type not in _DOCSTRING_HOSTS:
        return False
    items = statements_of(block, parsed.spec)
    if not items or items[0].id != node.id or len(items) != 1:
        return False
    if nxt is None:
        return True
    host_start = index.line_start(index.to_str(block.parent.start_byte))
    return _indent_width(index.text[nxt:]) <= _indent_width(index.text[host_start:])

"""Parsing and the tree walks shared by snap, holes, validation and span mining.

`parse()` keeps a small LRU of recent (language, text) -> tree: the engine snaps a span, asks for the
hole, then validates 16 candidates against the same source, and a full parse of a 2,000-line file
costs 10-20 ms while everything else here costs well under a millisecond.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import tree_sitter as ts

from diffucode.syntax._text import TextIndex
from diffucode.syntax.languages import LanguageSpec, get_parser

_CACHE_SIZE = 8
_cache: OrderedDict[tuple[str, str], Parsed] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Parsed:
    """A parsed text with its offset index. Node offsets are bytes; convert through `index`."""

    spec: LanguageSpec
    index: TextIndex
    tree: ts.Tree

    @property
    def root(self) -> ts.Node:
        return self.tree.root_node

    @property
    def text(self) -> str:
        return self.index.text

    def span(self, node: ts.Node) -> tuple[int, int]:
        """The node's [start, end) in str offsets."""
        return self.index.to_str(node.start_byte), self.index.to_str(node.end_byte)


def parse(text: str, spec: LanguageSpec, *, cache: bool = True) -> Parsed:
    """Parse `text`; recent results are reused (trees are immutable once built, so sharing is safe)."""
    key = (spec.name, text)
    if cache:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit
    index = TextIndex(text)
    parsed = Parsed(spec, index, get_parser(spec.name).parse(index.data))
    if cache:
        with _cache_lock:
            _cache[key] = parsed
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return parsed


def parse_bytes(data: bytes, spec: LanguageSpec) -> ts.Tree:
    """Uncached parse of a snippet (validation units): snippets are not worth an index or a slot."""
    return get_parser(spec.name).parse(data)


# -- errors -------------------------------------------------------------------------------------------


def count_errors(node: ts.Node) -> int:
    """Number of ERROR and MISSING nodes under `node`, descending only into subtrees that have errors."""
    if not node.has_error:
        return 0
    count = 0
    stack = [node]
    while stack:
        current = stack.pop()
        if current.is_error or current.is_missing:
            count += 1
        for child in current.children:
            if child.has_error or child.is_missing:
                stack.append(child)
    return count


def errors_overlap(root: ts.Node, start_byte: int, end_byte: int) -> bool:
    """Whether an ERROR/MISSING node overlaps [start_byte, end_byte). A zero-width MISSING token counts
    when it sits anywhere in [start_byte, end_byte], boundaries included: tree-sitter inserts it where
    the token was expected, which is often exactly the end of the broken construct."""
    if not root.has_error:
        return False
    stack = [root]
    while stack:
        current = stack.pop()
        s, e = current.start_byte, current.end_byte
        if s == e:
            if not start_byte <= s <= end_byte:
                continue
        elif s >= end_byte or e <= start_byte:
            continue
        if current.is_error or current.is_missing:
            return True
        stack.extend(c for c in current.children if c.has_error or c.is_missing)
    return False


# -- statement structure ------------------------------------------------------------------------------


# Blocks that start with a case label or value before their statements.
_CASE_CONTAINERS = frozenset(
    {"switch_case", "switch_default", "switch_block_statement_group", "expression_case", "type_case",
     "communication_case", "default_case"}
)
_CASE_HEADS = frozenset({"switch_label", "expression_list", "type_list", "send_statement", "receive_statement"})


def statements_of(block: ts.Node, spec: LanguageSpec) -> list[ts.Node]:
    """Statement-level items of a block: named children that are not comments; nested pure containers
    (Go's `block` -> `statement_list`) are flattened."""
    items: list[ts.Node] = []
    in_case = block.type in _CASE_CONTAINERS
    for child in block.named_children:
        if child.type in spec.comments or child.is_missing:
            continue
        if in_case and (child.type in spec.expressions or child.type in _CASE_HEADS):
            continue  # `case 1:` / Java `case 1 ->` labels are not statements
        if child.type in spec.blocks and child.type not in spec.compounds:
            items.extend(statements_of(child, spec))
        else:
            items.append(child)
    return items


def is_statement(node: ts.Node, spec: LanguageSpec) -> bool:
    """A statement-level item: a non-comment named child of a block (or a Go statement_list)."""
    parent = node.parent
    return (
        parent is not None
        and node.is_named
        and node.type not in spec.comments
        and parent.type in spec.blocks
        and not (node.type in spec.blocks and node.type not in spec.compounds)
    )


def block_owner(block: ts.Node, spec: LanguageSpec) -> ts.Node | None:
    """The node a block belongs to (the function, if, class...), skipping pure containers."""
    owner = block.parent
    while owner is not None and owner.type in spec.blocks and owner.type not in spec.compounds:
        owner = owner.parent
    return owner


def comment_lines_above(parsed: Parsed, start: int) -> int:
    """Start of the run of comments (and attached items such as Rust `#[attr]`) directly above the
    line at `start`: each starting its own line at the same indentation, no blank line between.
    A multi-line block comment (`/** ... */`) counts when it ends on the line just above.
    Returns `start`'s line start when there is none."""
    index = parsed.index
    text = parsed.text
    spec = parsed.spec
    wanted = spec.comments | spec.attached_above
    indent = index.indent_at(start)
    first = index.line_start(start)
    while first > 0:
        prev = index.line_start(first - 1)
        if not text[prev:first].strip():
            break
        head = index.to_byte(prev + len(index.indent_at(prev)))
        node = parsed.root.descendant_for_byte_range(head, head + 1)
        while node is not None and node.type not in wanted and node.parent is not None \
                and node.parent.start_byte == node.start_byte:
            node = node.parent  # from the first token (`//`, `#[`) up to the comment / attribute
        while node is not None and node.parent is not None and node.parent.type in spec.attached_above:
            node = node.parent
        if node is None or node.type not in wanted:
            break
        node_start = index.to_str(node.start_byte)
        line = index.line_start(node_start)
        if node_start != line + len(indent) or index.indent_at(line) != indent:
            break  # not at the start of its line, or at another indentation
        if index.to_str(node.end_byte) > index.line_end(prev):
            break  # reaches past this line: not directly above
        first = line
    return first


def code_line_after(parsed: Parsed, offset: int) -> int | None:
    """Start of the first line at or after `offset` that holds code (not blank, not only a comment)."""
    text = parsed.text
    index = parsed.index
    pos = offset
    comment = parsed.spec.line_comment
    while pos < len(text):
        end = index.line_end(pos)
        stripped = text[pos:end].strip()
        if stripped and not stripped.startswith(comment):
            return pos
        pos = end
    return None


def code_line_before(parsed: Parsed, offset: int) -> int | None:
    """Start of the last line before the line at `offset` that holds code."""
    text = parsed.text
    index = parsed.index
    pos = index.line_start(offset)
    comment = parsed.spec.line_comment
    while pos > 0:
        prev = index.line_start(pos - 1)
        stripped = text[prev:pos].strip()
        if stripped and not stripped.startswith(comment):
            return prev
        pos = prev
    return None

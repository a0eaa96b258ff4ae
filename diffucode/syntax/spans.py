"""Mask candidates for training and for syntax-derived eval tasks: spans that are whole syntactic units.

Masking whole units (an expression, a statement, a run of statements, a body) rather than random
token spans matches what the model is asked to do at inference, where `snap` widens every request to
such a unit. DreamOn trains on line-granular middles for the same reason; "line" spans are offered
too so that both objectives can be mixed through `probs`.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable
from dataclasses import dataclass

import tree_sitter as ts

from diffucode.errors import ConfigError
from diffucode.syntax._tree import Parsed, block_owner, parse, statements_of
from diffucode.syntax.languages import LanguageSpec, kind_ids, spec_for

__all__ = ["NodeSpan", "node_spans", "sample_node_span", "SPAN_KINDS", "DEFAULT_PROBS"]

SPAN_KINDS = ("expression", "statement", "statements", "condition", "body", "function_body", "line")
DEFAULT_PROBS: dict[str, float] = {
    "expression": 0.30,
    "statement": 0.25,
    "statements": 0.10,
    "condition": 0.05,
    "body": 0.10,
    "function_body": 0.05,
    "line": 0.15,
}
_MAX_RUN = 6  # longest run of sibling statements offered as one "statements" span
# Fields whose expression children are names being defined or labels, not values to predict.
_SKIP_FIELDS = frozenset({"name", "parameters", "alias", "label", "key", "property", "field", "type", "declarator"})
# Bodies of type/namespace declarations are declarations, not control-flow bodies.
_NOT_BODIES = frozenset(
    {
        "class_definition", "class_declaration", "class_specifier", "struct_specifier", "union_specifier",
        "enum_specifier", "namespace_definition", "impl_item", "trait_item", "mod_item", "enum_item",
        "struct_item", "union_item", "interface_declaration", "enum_declaration", "record_declaration",
        "abstract_class_declaration", "internal_module", "module", "linkage_specification",
        "foreign_mod_item", "class", "type_declaration", "match_statement", "switch_statement",
        "expression_switch_statement", "type_switch_statement", "select_statement",
    }
)
_CONDITION_PARENTS = frozenset(
    {
        "if_statement", "elif_clause", "while_statement", "do_statement", "for_statement",
        "if_expression", "while_expression", "ternary_expression", "conditional_expression",
    }
)
_SKIP_PARENTS = frozenset(
    {
        "parameters", "lambda_parameters", "import_statement", "import_from_statement", "aliased_import",
        "global_statement", "nonlocal_statement", "dotted_name", "formal_parameters", "parameter_list",
        "import_declaration", "import_spec", "use_declaration", "package_clause", "type",
        "typed_parameter", "formal_parameter",
        "required_parameter", "optional_parameter", "parameter_declaration", "parameter",
        "preproc_include", "preproc_def", "decorator", "pattern_list", "tuple_pattern", "list_pattern",
    }
)


@dataclass(frozen=True)
class NodeSpan:
    """A candidate mask span [start, end) in str offsets.

    kind: "expression" (exact span), "statement" (a simple statement), "statements" (a run of 2..6
    sibling statements, or one compound statement), "condition" (of if/elif/while..., parentheses
    excluded), "body" (a control-flow body), "function_body" (a function's body after its docstring),
    "line" (one non-blank physical line). Statement-level kinds cover whole lines (indentation and
    newline included) whenever the statements are alone on their lines.
    """

    start: int
    end: int
    kind: str


def node_spans(source: str, *, language: str | None = "python", kinds: Iterable[str] | None = None) -> list[NodeSpan]:
    """All mask candidates of the requested kinds (default: all), sorted by (start, end, kind).

    Unknown language: only "line" spans (there is no tree to read the others from). Results are
    cached by content (an LRU of recent files), so a data loader revisiting a file pays once.
    Raises ConfigError for an unknown kind.
    """
    return list(_spans_cached(source, *_key(language, kinds)))


def _key(language: str | None, kinds: Iterable[str] | None) -> tuple[str | None, tuple[str, ...]]:
    wanted = tuple(sorted(set(SPAN_KINDS if kinds is None else kinds)))
    unknown = [k for k in wanted if k not in SPAN_KINDS]
    if unknown:
        raise ConfigError(f"unknown span kind(s) {unknown}; expected some of {list(SPAN_KINDS)}")
    spec, _ = spec_for(language)
    return (spec.name if spec is not None else None), wanted


@functools.lru_cache(maxsize=32)
def _spans_cached(source: str, name: str | None, wanted: tuple[str, ...]) -> tuple[NodeSpan, ...]:
    return tuple(NodeSpan(a, b, k) for a, b, k in _raw_spans(source, name, wanted))


@functools.lru_cache(maxsize=32)
def _grouped(source: str, name: str | None, wanted: tuple[str, ...]) -> dict[str, tuple[tuple[int, int], ...]]:
    groups: dict[str, list[tuple[int, int]]] = {}
    for a, b, k in _raw_spans(source, name, wanted):
        groups.setdefault(k, []).append((a, b))
    return {k: tuple(v) for k, v in groups.items()}


@functools.lru_cache(maxsize=32)
def _raw_spans(source: str, name: str | None, wanted: tuple[str, ...]) -> tuple[tuple[int, int, str], ...]:
    """Sorted (start, end, kind) tuples: building frozen dataclasses costs more than finding spans,
    so samplers work on these and only the span they draw becomes a NodeSpan."""
    out: set[tuple[int, int, str]] = set()
    if "line" in wanted:
        out.update(_line_spans(source))
    if name is not None and set(wanted) - {"line"}:
        spec, _ = spec_for(name)
        assert spec is not None
        _tree_spans(parse(source, spec, cache=False), set(wanted), out)
    return tuple(sorted(out))


def _line_spans(source: str) -> list[tuple[int, int, str]]:
    spans = []
    pos = 0
    while pos < len(source):
        nl = source.find("\n", pos)
        stop = len(source) if nl < 0 else nl + 1
        if not source[pos:stop].isspace():
            spans.append((pos, stop, "line"))
        pos = stop
    return spans


def _tree_spans(parsed: Parsed, wanted: set[str], out: set[tuple[int, int, str]]) -> None:
    """One pass over the named nodes. Kept lean (it runs once per training file): kinds are compared
    as int ids, leaves that cannot be candidates are never pushed, statement geometry is computed
    once per block, and field names and error checks only for candidate nodes."""
    walk = _SpanWalk(parsed, wanted, out)
    blocks, expressions, condition_parents = walk.blocks, walk.expressions, walk.condition_parents
    want_blocks = walk.want_stmt or walk.want_bodies or walk.want_runs
    # (node, parent, parent kind id, index among the parent's named children, parent is a skip context)
    stack: list[tuple[ts.Node, ts.Node | None, int, int, bool]] = [(parsed.root, None, -1, 0, False)]
    while stack:
        node, parent, parent_kind, position, skip = stack.pop()
        if node.is_error:
            continue  # tree-sitter's recovery: spans inside are not trustworthy units
        kind = node.kind_id
        walk.push_children(node, kind, parent is None, stack)
        if kind in blocks and want_blocks:
            walk.visit_block(node, parent, parent_kind)
        if walk.want_cond and kind in condition_parents:
            walk.visit_condition(node)
        if walk.want_expr and kind in expressions and not skip:
            walk.visit_expression(node, kind, parent, parent_kind, position)


_Geometry = tuple[int, int, int, int]  # (start, end, line start or -1, line end or -1), see _SpanWalk.geometry


class _SpanWalk:
    """One `_tree_spans` pass: the language's node kinds as int ids, what is wanted, and the spans found."""

    def __init__(self, parsed: Parsed, wanted: set[str], out: set[tuple[int, int, str]]):
        spec = self.spec = parsed.spec
        self.to_str = parsed.index.to_str
        self.text = parsed.text
        self.wanted, self.out = wanted, out

        def ids(names: frozenset[str]) -> frozenset[int]:
            return kind_ids(spec.name, frozenset(names))

        self.blocks, self.compounds, self.wrappers = ids(spec.blocks), ids(spec.compounds), ids(spec.wrappers)
        self.expressions, self.atoms, self.comments = ids(spec.expressions), ids(spec.atoms), ids(spec.comments)
        self.containers = self.blocks - self.compounds  # pure containers: module, Python block, Go statement_list
        self.definitions, self.not_bodies = ids(spec.definitions), ids(_NOT_BODIES)
        self.skip_parents, self.condition_parents = ids(_SKIP_PARENTS), ids(_CONDITION_PARENTS)
        self.loop_heads = ids(frozenset({"for_statement", "for_in_clause", "for_in_statement", "for_expression"}))
        self.want_expr = "expression" in wanted
        self.want_cond = "condition" in wanted
        self.want_runs = "statements" in wanted
        self.want_stmt = bool(wanted & {"statement", "statements"})
        self.want_bodies = bool(wanted & {"body", "function_body"})

    def add(self, bounds: tuple[int, int], kind: str) -> None:
        if bounds[1] > bounds[0] and kind in self.wanted:
            self.out.add((bounds[0], bounds[1], kind))

    def push_children(self, node: ts.Node, kind: int, top: bool, stack: list) -> None:
        """Push the named children that can hold candidates (leaves only when they are candidates)."""
        named = node.named_children
        if not named:
            return
        child_skip = kind in self.skip_parents
        in_expression = kind in self.expressions
        in_block = kind in self.blocks
        for i, child in enumerate(named):
            if top and child.has_error:
                continue  # a top-level unit with errors: its nodes may be recovery artefacts
            if not in_block and child.named_child_count == 0:
                child_kind = child.kind_id
                if child_kind not in self.expressions or child_skip or (in_expression and child_kind in self.atoms):
                    continue
            stack.append((child, node, kind, i, child_skip))

    def geometry(self, item: ts.Node) -> _Geometry:
        """(start, end, line start or -1, line end or -1): the line bounds only where the item
        owns them (nothing but indentation before, nothing but a comment after)."""
        text = self.text
        s = self.to_str(item.start_byte)
        e = self.to_str(item.end_byte)
        ls = text.rfind("\n", 0, s) + 1
        nl = text.find("\n", e)
        le = len(text) if nl < 0 else nl + 1
        rest = text[e:le].strip()
        own_start = -1 if text[ls:s].strip() else ls
        own_end = le if not rest or rest.startswith(self.spec.line_comment) else -1
        return s, e, own_start, own_end

    def visit_block(self, node: ts.Node, parent: ts.Node | None, parent_kind: int) -> None:
        """The statement, body and run spans of a block's statements."""
        if parent is not None and node.kind_id in self.containers and parent_kind in self.blocks:
            return  # Go's statement_list inside a block: the block reports its statements
        items = statements_of(node, self.spec)
        if not items:
            return
        geo = [self.geometry(item) for item in items]
        if self.want_stmt:
            for item, g in zip(items, geo):
                if item.has_error:
                    continue
                k = item.kind_id
                compound = k in self.compounds or k in self.wrappers or _has_block_child(item, self.spec)
                self.add(_span(g, g), "statements" if compound else "statement")
        if node.has_error:
            return
        if self.want_bodies and parent is not None:
            self.add_body(node, items, geo)
        if self.want_runs:
            for i in range(len(items)):
                for j in range(i + 1, min(i + _MAX_RUN, len(items))):
                    self.add(_span(geo[i], geo[j]), "statements")

    def add_body(self, node: ts.Node, items: list[ts.Node], geo: list[_Geometry]) -> None:
        """A function's body (after its docstring) or a control-flow body."""
        owner = block_owner(node, self.spec)
        if owner is not None and owner.kind_id in self.definitions:
            skip = 1 if self.spec.name == "python" and _is_docstring(items[0]) else 0
            if len(items) > skip:
                self.add(_span(geo[skip], geo[-1]), "function_body")
        elif owner is not None and owner.kind_id not in self.not_bodies:
            self.add(_span(geo[0], geo[-1]), "body")

    def visit_condition(self, node: ts.Node) -> None:
        """The condition of an if/elif/while..., its parentheses excluded."""
        cond = node.child_by_field_name("condition")
        if cond is not None and not cond.has_error:
            inner = cond
            if cond.named_child_count == 1 and cond.child_count == 3 and cond.children[0].type == "(":
                inner = cond.named_children[0]
            self.add((self.to_str(inner.start_byte), self.to_str(inner.end_byte)), "condition")

    def visit_expression(self, node: ts.Node, kind: int, parent: ts.Node | None, parent_kind: int,
                         position: int) -> None:
        """An expression, unless it is trivial, a statement, or a name being bound."""
        if kind in self.atoms and parent_kind in self.expressions:
            return  # a lone token inside a bigger expression: too many, too trivial
        if parent_kind in self.blocks and kind not in self.comments and kind not in self.containers:
            return  # a statement-level expression (Rust's tail expression): a statement span
        if parent is not None:
            field = parent.field_name_for_named_child(position)
            if field in _SKIP_FIELDS or (field == "left" and parent_kind in self.loop_heads):
                return  # a name being bound or defined, not a value to predict
        if node.has_error:
            return
        self.add((self.to_str(node.start_byte), self.to_str(node.end_byte)), "expression")


def _span(first: _Geometry, last: _Geometry) -> tuple[int, int]:
    """From `first`'s start to `last`'s end: whole lines when both own their lines."""
    if first[2] >= 0 and last[3] >= 0:
        return first[2], last[3]
    return first[0], last[1]


def _is_docstring(node: ts.Node) -> bool:
    return node.type == "expression_statement" and node.named_child_count == 1 and \
        node.named_children[0].type in ("string", "concatenated_string")


def _has_block_child(node: ts.Node, spec: LanguageSpec) -> bool:
    for child in node.named_children:
        if child.type in spec.blocks or child.type in spec.compounds:
            return True
    return False


def sample_node_span(source: str, rng: random.Random, *, probs: dict[str, float] | None = None,
                     language: str | None = "python") -> NodeSpan | None:
    """Draw one candidate: first a kind (weights `probs`, default DEFAULT_PROBS, renormalised over the
    kinds this source has), then a span of that kind uniformly. None when the source has none.
    Raises ConfigError for unknown kinds or negative weights."""
    weights = dict(DEFAULT_PROBS if probs is None else probs)
    bad = [k for k in weights if k not in SPAN_KINDS]
    if bad:
        raise ConfigError(f"unknown span kind(s) in probs: {bad}; expected some of {list(SPAN_KINDS)}")
    if any(w < 0 for w in weights.values()):
        raise ConfigError("span kind probabilities must be >= 0")
    kinds = [k for k, w in weights.items() if w > 0]
    if not kinds:
        return None
    groups = _grouped(source, *_key(language, kinds))
    present = [k for k in kinds if k in groups]
    if not present:
        return None
    kind = rng.choices(present, weights=[weights[k] for k in present])[0]
    start, end = rng.choice(groups[kind])
    return NodeSpan(start, end, kind)

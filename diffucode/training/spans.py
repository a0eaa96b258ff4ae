"""Syntax spans and function bodies of one document, in its token positions: what infill holes may
replace (masking.py). Computed once per document while the shards are built (one `ast` parse per file,
or `diffucode.syntax.node_spans` for expressions and conditions), so the data loader never parses.
"""

from __future__ import annotations

import ast
import warnings

import numpy as np

from diffucode.training.corpus import DataConfig

SPAN_KINDS = ("stmt", "compound", "block", "expression", "condition")  # kind ids stored in .spans


def doc_spans(text: str, toks: np.ndarray, byte_len: np.ndarray, cfg: DataConfig, *,
              use_nodes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Syntax spans (S, 3) = (start, end, kind id in SPAN_KINDS) and function bodies (F, 3) = (def start,
    body start, body end) of one document, in its token positions.

    Statement-level spans and bodies come from one `ast` parse (whole lines, fast); with `use_nodes`,
    expression and condition spans also come from `diffucode.syntax.node_spans` (tree-sitter; ~4x
    slower than the rest of the build together, hence only for a sample of documents).
    """
    empty = np.zeros((0, 3), np.int64)
    if cfg.spans == "none" or not text.strip():
        return empty, empty
    data = text.encode("utf-8")
    tb = np.zeros(len(toks) + 1, dtype=np.int64)  # byte offset of each token start (+ the end)
    np.cumsum(byte_len[toks], out=tb[1:])
    if tb[-1] != len(data):
        return empty, empty  # an encoding surprise: no spans for this file (line spans still work)
    rows: list[tuple[int, int, int]] = []  # byte offsets
    body_rows: list[tuple[int, int, int]] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "invalid escape sequence" etc.: thousands of lines of noise otherwise
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        tree = None
    if tree is not None:
        nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        line_start = np.concatenate([[0, 0], nl + 1])  # 1-based line number → byte offset of its start
        line_end = np.concatenate([[0], nl + 1, [len(data)]])  # 1-based → byte offset after its newline
        _walk(tree, data, line_start, line_end, rows, body_rows)
    sp = np.zeros((0, 3), np.int64)
    if rows:
        arr = np.array(rows, dtype=np.int64)
        arr[:, :2] = np.searchsorted(tb, arr[:, :2], side="left")  # line starts are token starts
        sp = arr
    node_spans = _syntax_node_spans() if (use_nodes and cfg.spans == "auto") else None
    if node_spans is not None:
        try:
            nodes = node_spans(text, language="python", kinds=("expression", "condition"))
        except Exception:  # a failure of the span finder on one odd file must not stop the whole build
            nodes = []
        if nodes:
            c2b = _char_to_byte(text)
            a = c2b[np.fromiter((n.start for n in nodes), np.int64, len(nodes))]
            b = c2b[np.fromiter((n.end for n in nodes), np.int64, len(nodes))]
            k = np.array([4 if n.kind == "condition" else 3 for n in nodes], dtype=np.int64)
            ta = np.searchsorted(tb, a, side="right") - 1  # the token holding the first byte
            te = np.searchsorted(tb, b, side="left")  # the first token boundary at or after the end
            sp = np.concatenate([sp, np.stack([ta, te, k], 1)])
    if len(sp):
        n = sp[:, 1] - sp[:, 0]
        sp = np.unique(sp[(n >= 1) & (n <= cfg.syntax_span_max_tokens)], axis=0)
    bd = empty
    if body_rows:
        arr = np.searchsorted(tb, np.array(body_rows, dtype=np.int64), side="left")
        bd = np.unique(arr[(arr[:, 2] > arr[:, 1]) & (arr[:, 1] > arr[:, 0])], axis=0)
    return sp, bd


def _walk(tree, data: bytes, line_start, line_end, rows, body_rows) -> None:
    """Statement / block spans (whole lines, byte offsets; kinds 0-2) and function bodies of a module."""

    def owns(first: int, col: int) -> bool:  # only indentation before the statement on its first line
        return not data[line_start[first] : line_start[first] + col].strip()

    stack = [tree.body]
    while stack:
        body = stack.pop()
        if not body:
            continue
        if len(body) > 1 and owns(body[0].lineno, body[0].col_offset):
            rows.append((int(line_start[body[0].lineno]), int(line_end[body[-1].end_lineno]), 2))
        for node in body:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            compound = False
            for attr in ("body", "orelse", "finalbody", "handlers", "cases"):
                sub = getattr(node, attr, None)
                if isinstance(sub, list) and sub:
                    compound = True
                    if attr in ("handlers", "cases"):
                        for h in sub:
                            stack.append(h.body)
                    else:
                        stack.append(sub)
            if owns(node.lineno, node.col_offset):
                rows.append((int(line_start[first]), int(line_end[node.end_lineno]), 1 if compound else 0))
            is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            if is_def and node.body and owns(node.lineno, node.col_offset):
                b0 = node.body[0]
                has_doc = (isinstance(b0, ast.Expr) and isinstance(getattr(b0, "value", None), ast.Constant)
                           and isinstance(b0.value.value, str))
                if has_doc and len(node.body) > 1:
                    start = line_end[b0.end_lineno]  # the line after the docstring
                elif not has_doc and b0.lineno > node.lineno and owns(b0.lineno, b0.col_offset):
                    start = line_start[b0.lineno]
                else:
                    continue
                body_rows.append((int(line_start[first]), int(start), int(line_end[node.end_lineno])))


def _syntax_node_spans():
    """`diffucode.syntax.node_spans` when the syntax package provides it, else None (ast spans are used)."""
    try:
        from diffucode import syntax  # noqa: PLC0415 — optional while that module is being written
    except Exception:
        return None
    return getattr(syntax, "node_spans", None)


def _char_to_byte(text: str) -> np.ndarray:
    """(len(text) + 1,) byte offset of every str offset."""
    if text.isascii():
        return np.arange(len(text) + 1, dtype=np.int64)
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    width = 1 + (cp >= 0x80) + (cp >= 0x800) + (cp >= 0x10000)
    return np.concatenate([[0], np.cumsum(width, dtype=np.int64)])

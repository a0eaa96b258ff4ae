"""tree-sitter syntax layer: snap ranges to nodes, classify holes, validate splices, mine mask spans.

All positions in and out of this package are 0-based offsets into the Python `str`; tree-sitter's
UTF-8 byte offsets never leave it (conversion lives in `_text.py`). Unknown languages never raise:
they fall back to line-based behaviour and say so.

Files: languages.py (registry, grammar loading), _text.py (str<->byte offsets, lines), _tree.py
(parse cache, error counts, statement structure), snap.py, holes.py, validate.py, spans.py.
"""

from diffucode.syntax.holes import HOLE_KINDS, Hole, hole_at_cursor
from diffucode.syntax.languages import available_languages, language_for_path
from diffucode.syntax.snap import SNAP_KINDS, Snap, snap
from diffucode.syntax.spans import DEFAULT_PROBS, SPAN_KINDS, NodeSpan, node_spans, sample_node_span
from diffucode.syntax.validate import Validation, repair_splice, validate_splice

__all__ = [
    "language_for_path",
    "available_languages",
    "Snap",
    "snap",
    "SNAP_KINDS",
    "Hole",
    "hole_at_cursor",
    "HOLE_KINDS",
    "Validation",
    "validate_splice",
    "repair_splice",
    "NodeSpan",
    "node_spans",
    "sample_node_span",
    "SPAN_KINDS",
    "DEFAULT_PROBS",
]

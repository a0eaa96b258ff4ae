"""Results that would destroy the user's code are not results.

A candidate is refused (kept in the result as invalid, with the reason) when applying it would lose code
the user did not ask to lose:

* a fill (infill, complete) whose text is empty or blank where the replaced span held code;
* a rewrite whose text has another number of lines than the span (a rewrite keeps the span's lines by
  definition: a dropped or merged line is lost code), or is blank where the span held code.

`allow_delete` (the `--allow-delete` flag, the language server's `allowDelete` setting) accepts such
results for a user who really means to delete. The rules read only the text before and after, so
every front end (CLI, language server, eval) applies the same ones through the infill API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

KINDS = ("fill", "rewrite")
REFUSED = "refused: "  # how a refusal reason starts (Candidate.reason, InfillResult.refused)


def _lines(source: str, start: int, end: int) -> tuple[int, int]:
    """1-based first and last line of source[start:end]."""
    return source.count("\n", 0, start) + 1, source.count("\n", 0, max(start, end - 1)) + 1


def _line_range(source: str, start: int, end: int) -> str:
    first, last = _lines(source, start, end)
    return f"line {first}" if first == last else f"lines {first}-{last}"


def refusal(kind: str, source: str, start: int, end: int, new: str) -> str | None:
    """Why replacing source[start:end] by `new` would destroy code, or None when it would not."""
    old = source[start:end]
    where = _line_range(source, start, end)
    if old.strip() and not new.strip():
        verb = "rewrote" if kind == "rewrite" else "filled"
        return f"{REFUSED}the model {verb} {where} with nothing, which would delete them"
    breaks_old, breaks_new = old.count("\n"), new.count("\n")
    if kind == "rewrite" and breaks_new != breaks_old:
        return (f"{REFUSED}the rewrite of {where} has {breaks_new} line break(s) instead of "
                f"{breaks_old}: lines would be dropped or merged")
    return None


def screen(kind: str, source: str, candidates: Sequence, *, allow_delete: bool) -> list:
    """The candidates with every destructive valid one turned invalid (reason: why), in the same order
    of preference: valid and kept first, by score; then the rest."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if allow_delete:
        return list(candidates)
    out = []
    for c in candidates:
        why = None
        if c.valid:
            why = next((r for ed in c.edits if (r := refusal(kind, source, ed.start, ed.end, ed.text))), None)
        out.append(replace(c, valid=False, reason=why) if why else c)
    return sorted(out, key=lambda c: not c.valid)  # stable: each group keeps its order by score


def refused_reason(candidates: Sequence) -> str | None:
    """The reason the best candidate was refused, when no candidate is left valid and one was refused."""
    if any(c.valid for c in candidates):
        return None
    return next((c.reason for c in candidates if c.reason.startswith(REFUSED)), None)


def snap_growth(source: str, selected: tuple[int, int], snapped: tuple[int, int]) -> str | None:
    """Why a snapped range grew too far beyond the selection to be regenerated, or None. It may add at
    most as many lines as were selected, and at least 3 (e.g. a `def` line and a closing bracket): a
    3-line selection that snaps to a 22-line function would regenerate 19 lines nobody selected."""
    n, m = (last - first + 1 for first, last in (_lines(source, *selected), _lines(source, *snapped)))
    if m - n <= max(3, n):
        return None
    return (f"{REFUSED}snapping {_line_range(source, *selected)} gives {_line_range(source, *snapped)}, "
            f"{m - n} lines more than selected (at most {max(3, n)}): select the range to regenerate, "
            "or leave out the snap")

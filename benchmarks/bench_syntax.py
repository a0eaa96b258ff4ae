"""Syntax-layer latency on a ~2,000-line Python file: parse, snap, hole_at_cursor, validate 16 candidates.

Usage: python benchmarks/bench_syntax.py [--file PATH] [--reps N]

The file defaults to the standard library's difflib.py (2,056 lines on CPython 3.11); any file can be
given. Each operation runs at 12 positions spread over the file (a seeded sample of code lines),
`--reps` times each; the table reports wall-time p50/p90 and CPU-time p50 in milliseconds (CPU time
because the machine is shared and wall time then includes time spent descheduled). "cold" rows clear
the parse cache first (the first request on a file); "warm" rows reuse the tree the engine's snap
built (the request flow is snap, generate, validate 16 candidates on the same text). "validate 16"
starts from an empty plan cache (choosing the unit, compiling it once before the edit) and includes
a few deliberately broken candidates. The whole-file row is the simple alternative (reparse and
compile the file per candidate), measured for comparison. Target: snap + validate-16 <= 10 ms.
"""

from __future__ import annotations

import argparse
import difflib
import os
import random
import statistics
import time
from collections.abc import Callable
from functools import partial

from diffucode.syntax import _tree, hole_at_cursor, node_spans, snap, spans, validate, validate_splice
from diffucode.syntax.languages import SPECS, get_parser

TARGET_MS = 10.0


def timed(fn: Callable[[], object], setup: Callable[[], object] | None = None) -> tuple[float, float]:
    """(wall ms, CPU ms) of one call. CPU time (this process only) is reported next to wall time
    because the machine is shared: under load, wall time also counts time spent descheduled."""
    if setup is not None:
        setup()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def candidates(original: str, rng: random.Random) -> list[str]:
    """16 plausible candidates: digit/name edits (mostly valid) and a few broken ones."""
    out = []
    for k in range(16):
        text = original
        if k % 4 == 3:
            text = text.replace(")", "", 1) if ")" in text else text + "("  # broken bracket
        elif k % 4 == 2:
            text = text.replace("    ", "   ", 1)  # indentation slip
        else:
            text = text.replace("1", str(rng.randint(2, 9)), 1).replace("self", "this", 1)
        out.append(text)
    return out


def clear_span_caches() -> None:
    for cache in (spans._raw_spans, spans._spans_cached, spans._grouped):
        cache.cache_clear()


def validate_all(source: str, start: int, end: int, cands: list[str]) -> None:
    for cand in cands:
        validate_splice(source, start, end, cand)


def validate_whole_file(source: str, start: int, end: int, cands: list[str]) -> None:
    """The simple alternative, for comparison: reparse and compile the whole file per candidate."""
    for cand in cands:
        text = source[:start] + cand + source[end:]
        _tree.count_errors(get_parser("python").parse(text.encode("utf-8")).root_node)
        try:
            compile(text, "<file>", "exec", dont_inherit=True)
        except SyntaxError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=difflib.__file__, help="Python file to measure on (default: difflib.py)")
    parser.add_argument("--reps", type=int, default=15, help="repetitions per position")
    args = parser.parse_args()
    with open(args.file, encoding="utf-8") as handle:
        source = handle.read()
    lines = source.split("\n")
    print(f"file: {args.file} ({source.count(chr(10))} lines, {len(source)} chars); cpus: {os.cpu_count()}; "
          f"load avg: {os.getloadavg()[0]:.2f}")

    rng = random.Random(0)
    code_lines = [i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith("#")]
    picks = sorted(rng.sample(code_lines, 12))
    starts = [sum(len(line) + 1 for line in lines[:i]) for i in picks]
    spec = SPECS["python"]
    data = source.encode("utf-8")

    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in (
        "full parse (tree-sitter only)", "parse + offset index (cold cache)", "snap, cold (includes parse)",
        "snap, warm tree", "hole_at_cursor, warm tree", "validate 16 candidates", "snap + validate 16 (warm)",
        "validate 16, whole-file alternative", "node_spans, cold (all kinds)")}
    for start in starts:
        stop = start + len(lines[source.count("\n", 0, start)])
        mid = start + (stop - start) // 2
        snap_it = partial(snap, source, mid, stop)
        for _ in range(args.reps):
            rows["full parse (tree-sitter only)"].append(timed(partial(get_parser("python").parse, data)))
            rows["parse + offset index (cold cache)"].append(
                timed(partial(_tree.parse, source, spec), setup=_tree._cache.clear))
            rows["snap, cold (includes parse)"].append(timed(snap_it, setup=_tree._cache.clear))
            rows["snap, warm tree"].append(timed(snap_it))
            rows["hole_at_cursor, warm tree"].append(timed(partial(hole_at_cursor, source, stop)))
            region = snap_it()
            t_validate = timed(partial(validate_all, source, region.start, region.end,
                                       candidates(source[region.start : region.end], rng)),
                               setup=validate._plan.cache_clear)
            rows["validate 16 candidates"].append(t_validate)
            t_snap = timed(snap_it)
            rows["snap + validate 16 (warm)"].append((t_snap[0] + t_validate[0], t_snap[1] + t_validate[1]))
        region = snap_it()
        rows["validate 16, whole-file alternative"].append(timed(partial(
            validate_whole_file, source, region.start, region.end, candidates(source[region.start : region.end], rng))))
        rows["node_spans, cold (all kinds)"].append(
            timed(partial(node_spans, source), setup=clear_span_caches))

    width = max(len(name) for name in rows)
    print(f"\n| {'operation':<{width}} | p50 wall ms | p90 wall ms | p50 CPU ms |   n |")
    print(f"|{'-' * (width + 2)}|------------:|------------:|-----------:|----:|")
    for name, values in rows.items():
        walls = sorted(v[0] for v in values)
        p90 = walls[min(len(walls) - 1, int(0.9 * len(walls)))]
        cpu = statistics.median(v[1] for v in values)
        print(f"| {name:<{width}} | {statistics.median(walls):11.2f} | {p90:11.2f} | {cpu:10.2f} | {len(values):3d} |")
    total = rows["snap + validate 16 (warm)"]
    wall, cpu = statistics.median(v[0] for v in total), statistics.median(v[1] for v in total)
    def verdict(ms: float) -> str:
        return "meets" if ms <= TARGET_MS else "misses"

    print(f"\nsnap + validate-16 p50 vs the {TARGET_MS:.0f} ms target: {cpu:.2f} ms CPU ({verdict(cpu)}), "
          f"{wall:.2f} ms wall ({verdict(wall)}; load avg {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus)")


if __name__ == "__main__":
    main()

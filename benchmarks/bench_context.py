"""Repository context on this CPU: how fast a project is indexed and a hole's drafts are found.

    python benchmarks/bench_context.py                         # site-packages, up to 10,000 Python files
    python benchmarks/bench_context.py --root DIR --files N    # any project

Measured in one run: listing the project's files, the first index (read + tokenize + postings; ms per
1,000 files), and retrieval for `--holes` random single lines of the project's own files: the project
search (drafts from the other files) and the file search (the hole's own file with the hole cut out),
p50 and p95, plus how often the best draft is the hole's own line (a verbatim relative elsewhere).
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sysconfig
import time
from pathlib import Path

from diffucode.context import RepoContext
from diffucode.fitting import Hole
from diffucode.workspace import Limits, Workspace


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def holes(ws: Workspace, paths: list[Path], n: int, seed: int):
    """(path, text, start, end) of `n` random non-blank lines of the project's files."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        path = rng.choice(paths)
        text = ws.read(path)
        if not text:
            continue
        lines = text.split("\n")
        i = rng.randrange(max(1, len(lines) - 1))
        if not lines[i].strip():
            continue
        start = sum(len(x) + 1 for x in lines[:i])
        out.append((path, text, start, min(len(text), start + len(lines[i]) + 1)))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path(sysconfig.get_paths()["purelib"]), help="the project folder")
    p.add_argument("--files", type=int, default=10_000, help="at most this many files (default 10,000)")
    p.add_argument("--holes", type=int, default=200, help="random single-line holes to time (default 200)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    ws = Workspace(args.root, limits=Limits(max_files=args.files))
    t0 = time.perf_counter()
    paths = ws.paths()
    list_s = time.perf_counter() - t0
    ctx = RepoContext(ws, mode="repo")
    idx = ctx.index()
    per_1000 = ctx.index_seconds * 1e3 / max(1, len(idx)) * 1000
    cases = holes(ws, paths, args.holes, args.seed)
    project, in_file, verbatim = [], [], 0
    for path, text, start, end in cases:
        hole = Hole.in_text(text, start, end)
        t = time.perf_counter()
        found = idx.search(hole, k=4, exclude=[path])
        project.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        RepoContext(None, mode="file").drafts(path, text, start, end, k=4)
        in_file.append((time.perf_counter() - t) * 1e3)
        best = max(found, key=lambda s: s.score, default=None)
        verbatim += best is not None and best.text.strip() == text[start:end].strip()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"project: {args.root} ({len(paths)} files listed in {list_s:.1f} s; {len(idx)} indexed, "
          f"{idx.n_lines:,} lines)")
    print(f"first index: {ctx.index_seconds:.1f} s ({per_1000:.0f} ms per 1,000 files); peak RSS {rss:.0f} MiB")
    print("| search | p50 (ms) | p95 (ms) |\n|---|---:|---:|")
    print(f"| project (other files) | {statistics.median(project):.1f} | {pct(project, 0.95):.1f} |")
    print(f"| the hole's own file, hole cut out | {statistics.median(in_file):.1f} | {pct(in_file, 0.95):.1f} |")
    total = [a + b for a, b in zip(project, in_file)]
    print(f"| both (what a request costs) | {statistics.median(total):.1f} | {pct(total, 0.95):.1f} |")
    print(f"best project draft is the hole's own line (a verbatim relative elsewhere): {verbatim}/{len(cases)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Holes in a real repository, filled with and without the rest of that repository as context.

`build_tasks` picks single lines and short blocks (2–6 lines) of statements inside function bodies of a
repository's Python files (docstrings, comments and `pass` excluded), deterministically by seed and
spread over the files. `run_tasks` fills each hole four ways and scores exact match:

- "jaccard": no model; the draft whose surroundings share the most words with the hole's (one token
  Jaccard of the 3 lines above and below: RepoCoder's sparse retriever, the baseline to beat),
- "retrieval": no model; the best draft of diffucode's retrieval (surroundings matched line by line),
- "none": the model alone (diffucode.infill),
- "repo": the model with drafts from the repository (diffucode.refine), the file's own text minus the
  hole included.

Exact match compares the lines with trailing whitespace removed. The repository should be held out of
the model's training corpus: `corpus_overlap` lists training files that hold a hole's lines in their
place (a 3-line run of the lines and their neighbours: the rule the training corpus uses against the
benchmarks).
"""

from __future__ import annotations

import ast
import json
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from diffucode.context import RepoContext
from diffucode.workspace import Limits, Workspace

MODES = ("jaccard", "retrieval", "none", "repo")


@dataclass(frozen=True)
class RepoTask:
    task_id: str
    path: str  # relative to the repository root
    start_line: int  # 0-based, inclusive
    end_line: int  # 0-based, exclusive
    target: str  # the lines' text, newline-terminated

    def span(self, text: str) -> tuple[int, int]:
        lines = text.split("\n")
        start = sum(len(x) + 1 for x in lines[: self.start_line])
        return start, start + len(self.target)


def build_tasks(root: Path, *, lines: int = 200, blocks: int = 100, seed: int = 0, per_file: int = 8) -> list[RepoTask]:
    """`lines` single-line and `blocks` 2–6-line holes from the repository's Python files."""
    ws = Workspace(root, limits=Limits(exts=(".py",)))
    singles, multis = [], []
    for path, text in ws.texts():
        rel = path.relative_to(ws.root).as_posix()
        one, many = _holes(text)
        rng = random.Random(f"{seed}:{rel}")
        singles += [(rel, a, b) for a, b in rng.sample(one, min(per_file, len(one)))]
        multis += [(rel, a, b) for a, b in rng.sample(many, min(per_file // 2, len(many)))]
    rng = random.Random(seed)
    picked = rng.sample(singles, min(lines, len(singles))) + rng.sample(multis, min(blocks, len(multis)))
    tasks = []
    for rel, a, b in picked:
        text_lines = (ws.root / rel).read_text(encoding="utf-8").split("\n")
        kind = "line" if b - a == 1 else "block"
        tasks.append(RepoTask(f"{rel}:{a + 1}-{b}:{kind}", rel, a, b, "\n".join(text_lines[a:b]) + "\n"))
    return tasks


def split(tasks: list[RepoTask], which: str, dev: int) -> list[RepoTask]:
    """The dev split (the first `dev` single lines and dev/2 blocks), the test split (the rest), or all."""
    if which == "all":
        return tasks
    lines = [t for t in tasks if t.task_id.endswith(":line")]
    blocks = [t for t in tasks if t.task_id.endswith(":block")]
    if which == "dev":
        return lines[:dev] + blocks[: dev // 2]
    return lines[dev:] + blocks[dev // 2 :]


def _holes(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(single-line statements, runs of 2–6 lines of whole statements) inside function bodies, 0-based."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return [], []
    lines = text.split("\n")
    one, many = [], []
    for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        body = [s for s in fn.body if not _is_docstring(s) and not isinstance(s, ast.Pass)]
        for s in body:
            if s.lineno == s.end_lineno and lines[s.lineno - 1].strip():
                one.append((s.lineno - 1, s.lineno))
        for i in range(len(body)):
            for j in range(i, len(body)):
                a, b = body[i].lineno - 1, body[j].end_lineno
                if 2 <= b - a <= 6 and b - a == _statement_lines(body[i : j + 1]):
                    many.append((a, b))
    return sorted(set(one)), sorted(set(many))


def _is_docstring(s: ast.stmt) -> bool:
    return isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)


def _statement_lines(stmts: list[ast.stmt]) -> int:
    """Lines covered by the statements when they are contiguous (no comment or blank line between)."""
    return stmts[-1].end_lineno - stmts[0].lineno + 1 if all(
        b.lineno == a.end_lineno + 1 for a, b in zip(stmts, stmts[1:])) else -1


def exact(got: str | None, want: str) -> bool:
    if got is None:
        return False
    norm = lambda s: [x.rstrip() for x in s.rstrip("\n").split("\n")]  # noqa: E731
    return norm(got) == norm(want)


def run_tasks(root: Path, tasks: list[RepoTask], modes: Iterable[str], *, engine=None, settings=None,
              drafts: int = 4, window: int = 3, rename: bool = True,
              log: Callable[[str], None] = lambda s: None) -> dict:
    """Fill every task in each mode; returns {"modes": {mode: {...scores}}, "records": [...]}. The model's
    own fill is computed once and serves as "none" and as the model's candidate beside the drafts.
    `rename`: diffucode's drafts get the names of the hole's place (renaming.py; never the baseline's)."""
    from diffucode.infill import infill
    from diffucode.refine import with_drafts

    modes = list(modes)
    ctx = RepoContext(Workspace(root), mode="repo", window=window)
    t0 = time.perf_counter()
    log(f"indexed {len(ctx.index())} files in {time.perf_counter() - t0:.1f} s")
    records = []
    for i, task in enumerate(tasks):
        path = Path(root).resolve() / task.path
        text = path.read_text(encoding="utf-8")
        span = task.span(text)
        found = ctx.drafts(path, text, *span, k=drafts, rename=rename)
        rec = {**asdict(task), "drafts": len(found)}
        baseline = ctx.drafts(path, text, *span, k=drafts, match="jaccard", rename=False) if "jaccard" in modes else []
        base = infill(engine, text, [span], settings) if set(modes) & {"none", "repo"} else None
        for mode in modes:
            if mode == "jaccard":
                got = baseline[0].text if baseline else None
            elif mode == "retrieval":
                got = found[0].text if found else None
            else:
                res = base if mode == "none" else with_drafts(engine, text, span, found, settings, base)
                got = res.best.edits[0].text if res.best else None
            rec[mode] = {"text": got, "exact": exact(got, task.target)}
        records.append(rec)
        if (i + 1) % 25 == 0:
            log(f"{i + 1}/{len(tasks)} " + " ".join(f"{m} {_rate(records, m):.1%}" for m in modes))
    return {"modes": {m: _summary(records, m) for m in modes}, "records": records}


def _rate(records: list[dict], mode: str, kind: str | None = None) -> float:
    rs = [r for r in records if kind is None or r["task_id"].endswith(":" + kind)]
    return sum(r[mode]["exact"] for r in rs) / len(rs) if rs else 0.0


def _summary(records: list[dict], mode: str) -> dict:
    out = {"exact": _rate(records, mode), "tasks": len(records)}
    for kind in ("line", "block"):
        out[kind] = _rate(records, mode, kind)
    out["filled"] = sum(r[mode]["text"] is not None for r in records) / max(1, len(records))
    return out


def corpus_overlap(root: Path, tasks: list[RepoTask], corpus_json: Path) -> list[str]:
    """Training files (listed in a run's corpus.json) that contain a task's lines in their place: a 3-line run
    of the task's lines and their neighbours (the rule the training corpus uses against the benchmarks)."""
    from diffucode.training.decontamination import Decontaminator

    programs = []
    for t in tasks:
        lines = (Path(root) / t.path).read_text(encoding="utf-8").split("\n")
        programs.append("\n".join(lines[max(0, t.start_line - 2) : t.end_line + 2]))
    decon = Decontaminator(programs)
    docs = json.loads(Path(corpus_json).read_text())["docs"]
    hits = []
    for d in docs:
        try:
            text = Path(d["path"]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if decon.contaminated(text):
            hits.append(d["key"])
    return hits


# -- diffucode eval-repo ------------------------------------------------------------------------------
def register(subparsers) -> None:
    from diffucode.settings import add_flags

    p = subparsers.add_parser(
        "eval-repo", help="holes in a real repository, filled with and without the repository as context",
        description="Single lines and 2-6-line blocks inside the functions of REPO's Python files, filled by the "
                    "best retrieved draft alone (no model), by the model alone and by the model with the rest of "
                    "REPO as context; exact match of each (docs/context.md).")
    p.add_argument("repo", type=Path, help="the repository folder (held out of the model's training corpus)")
    p.add_argument("--lines", type=int, default=200, help="single-line holes (default 200)")
    p.add_argument("--blocks", type=int, default=100, help="2-6-line holes (default 100)")
    p.add_argument("--split", choices=("all", "dev", "test"), default="all",
                   help="dev: the first --dev single-line and --dev/2 block holes (where settings are chosen); "
                        "test: the others (where they are reported); default all")
    p.add_argument("--dev", type=int, default=40, help="single-line holes in the dev split (default 40)")
    p.add_argument("--seed", type=int, default=0, help="which holes are picked (default 0)")
    p.add_argument("--window", type=int, default=3, help="lines above and below that describe a hole (default 3)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    p.add_argument("--model", default=None, help="model folder or hub id (default: the embedded model)")
    p.add_argument("--corpus", type=Path, default=None,
                   help="a training run's data/corpus.json: fail when a training file shares code with REPO")
    p.add_argument("--out", type=Path, default=None, help="write the records and scores here as JSON")
    p.add_argument("--no-rename", dest="rename", action="store_false",
                   help="keep the drafts' names as found (measure the renaming: docs/context.md)")
    add_flags(p.add_argument_group("generation"), only=("drafts", "refine_below", "retrieval_weight", "min_match"))
    p.set_defaults(func=_main)


def _main(args) -> int:
    from diffucode.errors import ConfigError

    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(MODES):
        raise ConfigError(f"--modes: choose from {', '.join(MODES)}")
    if not args.repo.is_dir():
        raise ConfigError(f"not a folder: {args.repo}")
    tasks = build_tasks(args.repo, lines=args.lines, blocks=args.blocks, seed=args.seed)
    tasks = split(tasks, args.split, args.dev)
    if args.corpus is not None:
        overlap = corpus_overlap(args.repo, tasks, args.corpus)
        if overlap:
            raise ConfigError(f"{len(overlap)} training files hold the holes' code, e.g. {overlap[0]}")
        print(f"no training file of {args.corpus} holds a hole's code in its place", file=sys.stderr)
    engine, settings = None, None
    if set(modes) - {"jaccard", "retrieval"}:
        from diffucode.loading import load_engine
        from diffucode.settings import InfillSettings, from_flags

        engine = load_engine(args.model)
        settings = InfillSettings(**from_flags(args))
        settings.check()
    out = run_tasks(args.repo, tasks, modes, engine=engine, settings=settings, window=args.window,
                    drafts=settings.drafts if settings else 4, rename=args.rename,
                    log=lambda s: print(s, file=sys.stderr))
    for mode, m in out["modes"].items():
        print(f"{mode:>9}: exact {m['exact']:.1%} (lines {m['line']:.1%}, blocks {m['block']:.1%}; "
              f"{m['tasks']} holes; filled {m['filled']:.0%})")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return 0

"""Decontamination: a file is dropped when it contains any 3 consecutive "non-trivial" lines of a
HumanEval/MBPP(+) program (prompt + canonical solution), comparing lines with all whitespace removed; a
line is non-trivial when it keeps ≥ 12 characters and is not a comment. Programs with fewer than 3 such
lines contribute their whole line sequence if it has ≥ 32 characters (shorter ones, such as
`return len(string)`, are too generic to identify a copy).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from diffucode.errors import ConfigError
from diffucode.training.files import normalize_text


def _norm_lines(text: str) -> list[str]:
    out = []
    for line in text.split("\n"):
        s = "".join(line.split())
        if len(s) >= 12 and not s.startswith("#"):
            out.append(s)
    return out


class Decontaminator:
    """Finds files that contain benchmark programs (see the module docstring for the rule)."""

    def __init__(self, programs: Iterable[str], n: int = 3, min_short_chars: int = 32):
        self.by_len: dict[int, set[tuple[str, ...]]] = {}
        for prog in programs:
            lines = _norm_lines(normalize_text(prog))
            if len(lines) >= n:
                grams = [tuple(lines[i : i + n]) for i in range(len(lines) - n + 1)]
            elif lines and sum(map(len, lines)) >= min_short_chars:
                grams = [tuple(lines)]
            else:
                grams = []
            for g in grams:
                self.by_len.setdefault(len(g), set()).add(g)
        self.firsts = {g[0] for gs in self.by_len.values() for g in gs}
        self.n_grams = sum(map(len, self.by_len.values()))

    def contaminated(self, text: str) -> bool:
        lines = _norm_lines(text)
        for i, line in enumerate(lines):
            if line in self.firsts:
                for k, grams in self.by_len.items():
                    if tuple(lines[i : i + k]) in grams:
                        return True
        return False


def find_bench_data(explicit: str = "") -> Path | None:
    """The benchmark data folder: explicit, $DIFFUCODE_EVAL_DATA, or a shared/data beside/inside the repo."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_dir():
            raise ConfigError(f"benchmark data folder not found: {p}")
        return p
    cands = []
    if os.environ.get("DIFFUCODE_EVAL_DATA"):
        cands.append(Path(os.environ["DIFFUCODE_EVAL_DATA"]))
    repo = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), repo):
        cands += [base / "shared" / "data", base.parent / "shared" / "data"]
    for c in cands:
        if (c / "human-eval").is_dir() or (c / "mbpp").is_dir():
            return c
    return None


def require_bench_data(explicit: str = "") -> Path:
    """find_bench_data, with a ConfigError that says what to do when there is none."""
    bench = find_bench_data(explicit)
    if bench is None:
        raise ConfigError(
            "decontamination needs the HumanEval/MBPP data: pass --bench-data DIR (a folder with human-eval/ and "
            "mbpp/), "
            "set DIFFUCODE_EVAL_DATA, or pass --no-decontaminate"
        )
    return bench


def benchmark_programs(folder: Path) -> list[str]:
    """HumanEval(+) prompt + canonical solution, MBPP code, MBPP+ solutions found under `folder`."""
    progs: list[str] = []

    def jsonl(path: Path) -> Iterator[dict]:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    for path in sorted(folder.rglob("*.jsonl*")) + sorted(folder.rglob("*.json")):
        if "infilling" in str(path).lower():
            continue  # HumanEval-Infilling is HumanEval again, cut into pieces
        recs = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else list(jsonl(path))
        if not isinstance(recs, list):
            continue
        for r in recs:
            if not isinstance(r, dict):
                continue
            if isinstance(r.get("code"), str):
                progs.append(r["code"])
            if isinstance(r.get("canonical_solution"), str):
                prompt = r.get("prompt") if isinstance(r.get("prompt"), str) and "def " in r.get("prompt", "") else ""
                progs.append(prompt + r["canonical_solution"])
    return progs

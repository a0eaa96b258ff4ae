"""Shards: split one eval over processes or machines, then join them into one run.

``--shard I/N`` (1 <= I <= N) keeps every N-th selected task, starting with the I-th (round-robin over the
task set's order after ``--tasks``/``--limit``/``--category``), so shards are deterministic and balanced.
Each shard is a normal run folder (``samples.jsonl``, and ``results.jsonl`` unless ``--generate-only``); its
``run.json`` records the shard, its task ids, and a sha256 of the whole selection (rewritten when the shard
is resumed). A shard may be empty (``--limit 3 --shard 4/4``): it still writes its run folder, so that the
merge finds all N.

``diffucode eval merge DIR... --out DIR`` checks that the shards come from one run (same identity apart from
the shard, same selection, same samples per task), that they cover the selection exactly once and that every
shard is complete (it only reads the shard folders); then it writes the merged ``samples.jsonl``, reuses
each execution found in a shard's ``results.jsonl`` (same completion), executes the rest, and writes
results, summary and report like an unsharded run. The merged run has the identity of the unsharded run,
so its results are the same. Merging into an ``--out`` that already holds samples or results with other
completions is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TextIO

from diffucode.errors import DiffucodeError

from .data import TaskSet, load_taskset
from .results import RESULTS, RUN, SAMPLES, ResultWriter, load_results
from .runner import RunConfig, check_identity, evaluate


class MergeError(DiffucodeError):
    """Shards that do not add up to one run."""


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise DiffucodeError(f"--shard {text!r}: expected I/N such as 1/4") from None
    if not 1 <= i <= n:
        raise DiffucodeError(f"--shard {text!r}: need 1 <= I <= N")
    return i, n


def selection_sha256(task_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(task_ids).encode()).hexdigest()


def shard_taskset(taskset: TaskSet, index: int, count: int) -> tuple[TaskSet, dict]:
    """Tasks of shard ``index`` of ``count`` (1-based), and the shard record for run.json."""
    ids = [t.task_id for t in taskset.tasks]
    mine = taskset.tasks[index - 1::count]
    info = {"index": index, "count": count, "tasks": [t.task_id for t in mine],
            "n_selected": len(ids), "selection_sha256": selection_sha256(ids)}
    return TaskSet(taskset.name, tuple(mine), taskset.sources, taskset.fewshot, taskset.notes), info


def _read_run(d: Path) -> dict:
    path = d / RUN
    if not path.is_file():
        raise MergeError(f"{d} is not an eval run folder (no {RUN})")
    return json.loads(path.read_text(encoding="utf-8"))


def _read_shards(dirs: list[Path]) -> tuple[list[dict], list[dict], dict]:
    """Each folder's run.json and shard record, and the identity they share (apart from the shard)."""
    if not dirs:
        raise MergeError("name the shard folders to merge")
    runs = [_read_run(Path(d)) for d in dirs]
    shards = []
    for d, run in zip(dirs, runs):
        shard = run.get("shard")
        if not shard:
            raise MergeError(f"{d} is not a shard (it was not run with --shard I/N)")
        shards.append(shard)
    identities = [{k: v for k, v in r["identity"].items() if k != "shard"} for r in runs]
    for d, ident in zip(dirs[1:], identities[1:]):
        diff = sorted(k for k in set(ident) | set(identities[0]) if ident.get(k) != identities[0].get(k))
        if diff:
            raise MergeError(f"{d} is from a different run than {dirs[0]}: "
                             + ", ".join(f"{k}: {identities[0].get(k)!r} vs {ident.get(k)!r}" for k in diff))
    return runs, shards, identities[0]


def _check_coverage(shards: list[dict]) -> dict[str, int]:
    """Check that the shards are 1..N of one selection, each task in exactly one; returns task id -> shard."""
    for key in ("count", "n_selected", "selection_sha256", "n_samples"):
        values = {json.dumps(s.get(key)) for s in shards}
        if len(values) > 1:
            raise MergeError(f"the shards disagree on {key}: {sorted(values)}")
    count = shards[0]["count"]
    indices = sorted(s["index"] for s in shards)
    if indices != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(indices))
        dup = sorted({i for i in indices if indices.count(i) > 1})
        raise MergeError(f"shards must be 1..{count}, each once: "
                         + (f"missing {missing}" if missing else "") + (f" repeated {dup}" if dup else ""))
    seen: dict[str, int] = {}
    for s in shards:
        for tid in s["tasks"]:
            if tid in seen:
                raise MergeError(f"{tid} is in shard {seen[tid]} and shard {s['index']}")
            seen[tid] = s["index"]
    if len(seen) != shards[0]["n_selected"]:
        raise MergeError(f"the shards hold {len(seen)} tasks; the selection had {shards[0]['n_selected']}")
    return seen


def _merged_taskset(identity: dict, first_run: dict, shards: list[dict], seen: dict[str, int],
                    data_file: str | None, data_dir: str | None) -> tuple[TaskSet, TaskSet]:
    """The task set the shards used (checked by sha256), and the selection they were cut from, in order."""
    paths = first_run.get("data_paths") or []
    if data_file is None and data_dir is None and paths:
        data_file = paths[0]
    taskset = load_taskset(identity["taskset"], data_file=data_file, data_dir=data_dir, allow_hub=True)
    if [s.sha256 for s in taskset.sources] != identity["data_sha256"]:
        raise MergeError(f"the data found for {identity['taskset']} ({[s.path for s in taskset.sources]}) is not "
                         "the data the shards used (sha256 differs); pass --data-file / --data-dir")
    by_id = {t.task_id: t for t in taskset.tasks}
    missing = [tid for tid in seen if tid not in by_id]
    if missing:
        raise MergeError(f"tasks not in the data: {missing[:5]}")
    # The selection, in its order, is the shards interleaved: shard I holds positions I-1, I-1+N, ...
    # (--tasks may list tasks in any order, so the data's order is not the selection's.)
    count = shards[0]["count"]
    by_index = {s["index"]: s["tasks"] for s in shards}
    try:
        selection = [by_index[j % count + 1][j // count] for j in range(len(seen))]
    except IndexError:
        raise MergeError("the shards' task lists are not a round-robin split of one selection") from None
    if selection_sha256(selection) != shards[0]["selection_sha256"]:
        raise MergeError("the shards' tasks do not add up to the selection they were cut from")
    chosen = tuple(by_id[tid] for tid in selection)
    return taskset, TaskSet(taskset.name, chosen, taskset.sources, taskset.fewshot, taskset.notes)


def _collect(dirs: list[Path], shards: list[dict], n: int) -> tuple[dict, dict]:
    """Every shard's samples, and the results whose completion is the sample's, keyed by (task_id, i)."""
    samples: dict[tuple[str, int], dict] = {}
    results: dict[tuple[str, int], dict] = {}
    for d, s in zip(dirs, shards):
        # Read only: merging needs no write access to the shard folders (a torn last line is ignored).
        have = load_results(Path(d) / SAMPLES, repair=False)
        done = load_results(Path(d) / RESULTS, repair=False)
        lacking = [(tid, i) for tid in s["tasks"] for i in range(n) if (tid, i) not in have]
        if lacking:
            raise MergeError(f"shard {s['index']} ({d}) is incomplete: {len(lacking)} samples missing, e.g. "
                             f"{lacking[0]}; rerun that shard's command to finish it")
        for tid in s["tasks"]:
            for i in range(n):
                samples[(tid, i)] = have[(tid, i)]
                rec = done.get((tid, i))
                if rec is not None and rec.get("completion") == have[(tid, i)].get("completion"):
                    results[(tid, i)] = rec
    return samples, results


def _configure(config: RunConfig, identity: dict, taskset: TaskSet, dirs: list[Path], n: int) -> Path:
    """Give ``config`` the shards' identity, sanitize and n_samples, and claim its folder (check_identity)."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.identity = {k: v for k, v in identity.items() if k not in ("taskset", "data_sha256", "sanitize")}
    config.sanitize = identity.get("sanitize", True)
    config.n_samples = n
    config.extra_run_info = {"merged_from": [str(Path(d).resolve()) for d in dirs],
                             "data_paths": [s.path for s in taskset.sources]}
    full_identity = {"taskset": taskset.name, "data_sha256": identity["data_sha256"],
                     "sanitize": config.sanitize, **config.identity}
    check_identity(out, full_identity, config.overwrite, config.extra_run_info)
    config.overwrite = False
    return out


def _write_merged(out: Path, samples: dict, results: dict, task_order: list[str]) -> None:
    """Append to ``out`` the samples and results it lacks, in task order; refuse other completions."""
    have_out = load_results(out / SAMPLES)
    done_out = load_results(out / RESULTS)
    # A folder merged into before (a resumed merge) must hold the same completions as the shards: else its
    # results belong to other samples, and keeping them would mix two runs.
    for key, sample in samples.items():
        for name, existing in ((SAMPLES, have_out), (RESULTS, done_out)):
            rec = existing.get(key)
            if rec is not None and rec.get("completion") != sample.get("completion"):
                raise MergeError(f"{out / name} holds a different completion for {key[0]} sample {key[1]} than "
                                 "the shards; pass --overwrite to replace it, or merge into another --out")
    with_samples = ResultWriter(out / SAMPLES)
    with_results = ResultWriter(out / RESULTS)
    try:
        order = {tid: pos for pos, tid in enumerate(task_order)}
        for key in sorted(samples, key=lambda k: (order[k[0]], k[1])):
            if key not in have_out:
                with_samples.write(samples[key])
            if key in results and key not in done_out:
                with_results.write(results[key])
    finally:
        with_samples.close()
        with_results.close()


def merge_runs(dirs: list[Path], config: RunConfig, *, data_file: str | None = None, data_dir: str | None = None,
               stream: TextIO | None = None) -> dict:
    """Join shard folders ``dirs`` into ``config.out_dir`` and return the merged summary.

    ``config.identity``, ``n_samples`` and ``sanitize`` are taken from the shards; limits, workers, k and
    calibration from ``config``.
    """
    runs, shards, identity = _read_shards(dirs)
    seen = _check_coverage(shards)
    taskset, merged_set = _merged_taskset(identity, runs[0], shards, seen, data_file, data_dir)
    n = shards[0]["n_samples"]
    samples, results = _collect(dirs, shards, n)
    out = _configure(config, identity, taskset, dirs, n)
    _write_merged(out, samples, results, list(dict.fromkeys(t.task_id for t in taskset.tasks)))

    def never(task, i):  # every sample is in samples.jsonl: nothing is generated
        raise MergeError(f"no sample {i} for {task.task_id}")

    return evaluate(merged_set, never, config, stream=stream)


__all__ = ["MergeError", "merge_runs", "parse_shard", "selection_sha256", "shard_taskset"]

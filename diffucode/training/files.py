"""The data build's file plumbing: reading a source file as the model reads it, atomic writes of the
data folder's arrays and JSON, content hashes, and the worker pool that scans files and builds shards.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np


def normalize_text(text: str) -> str:
    """What the model reads: LF newlines (the infill engine normalizes CRLF the same way)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_source(path: str) -> str:
    return normalize_text(Path(path).read_bytes().decode("utf-8"))


def parallel_map(fn, items: list, workers: int, init, initargs, *, chunksize: int):
    """fn over items, in a process pool when it pays, in order of completion."""
    if workers <= 1 or len(items) <= 1:
        init(*initargs)
        return [fn(x) for x in items]
    ctx = _pool_context()
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # children encode single-threaded; no fork warning
    try:
        with ctx.Pool(min(workers, len(items)), initializer=init, initargs=initargs) as pool:
            return list(pool.imap_unordered(fn, items, chunksize=chunksize))
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def _pool_context():
    """A process pool (fork where available: the workers need no CUDA and start instantly)."""
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    return ctx


def write_array(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    np.ascontiguousarray(arr).tofile(tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1 if len(json.dumps(obj)) < 1e6 else None) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def text_sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

"""A run folder's files and reading its results: what the runner writes and the report and merge read.

The runner (runner.py) writes them, the report (report.py) and eval merge (merge.py) read them; this
module sits below all three so none of them imports another to find a file name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS = "results.jsonl"
SAMPLES = "samples.jsonl"
RUN = "run.json"
CALIBRATION = "calibration.json"
SUMMARY = "summary.json"
RUN_FILES = (RESULTS, SAMPLES, RUN, CALIBRATION, SUMMARY, "report.md", "report.png")  # what a run writes


def load_results(path: Path, *, repair: bool = True) -> dict[tuple[str, int], dict]:
    """Records already in ``path`` keyed by (task_id, sample_id). A torn last line is ignored, and with
    ``repair`` also cut off the file (so appending goes on from a line start); ``repair=False`` only reads
    (``eval merge`` reads shard folders it may not write to)."""
    if not path.exists():
        return {}
    with open(path, "rb+" if repair else "rb") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            if repair:
                f.truncate(keep)
            data = data[:keep]
    done: dict[tuple[str, int], dict] = {}
    for line in data.splitlines():
        try:
            rec = json.loads(line)
            done[(rec["task_id"], int(rec["sample_id"]))] = rec
        except (ValueError, KeyError, TypeError):
            continue  # a damaged line: that pair simply runs again
    return done


class ResultWriter:
    """Appends whole lines with one unbuffered write each, so an interrupt never leaves half a line."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, record: dict) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def close(self) -> None:
        os.close(self._fd)

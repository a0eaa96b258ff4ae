"""Where tests find the benchmark data ($DIFFUCODE_EVAL_DATA, else ../shared/data beside the checkout),
and skipping without it."""

import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("DIFFUCODE_EVAL_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def load_or_skip(name: str):
    from diffucode_evals.data import get_spec, load_taskset

    spec = get_spec(name)
    if not (DATA / spec.filename).is_file():
        pytest.skip(f"benchmark data {spec.filename} not found under {DATA} (docs/evals.md, 'Data')")
    return load_taskset(name, data_dir=DATA, allow_hub=False)

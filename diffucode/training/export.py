"""Export: the run's latest checkpoint as an inference model folder (float16 safetensors shards under
15 MB, the tokenizer, config.json with the infill conventions and the training record, the README.md
model card), e.g. the embedded model in diffucode/weights/default.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from diffucode import checkpoint
from diffucode.errors import CheckpointError
from diffucode.training.card import model_card
from diffucode.training.state import ckpt_dir


def check_export_dest(dest: str | Path) -> None:
    """Refuse to export over anything but a diffucode model folder: a file, a non-empty folder of other
    files, or another kind of model would lose the user's files."""
    dest = Path(dest)
    try:
        if dest.exists() and not dest.is_dir():
            raise CheckpointError(f"export destination {dest} is a file")
        if dest.is_dir() and any(dest.iterdir()):
            fmt = checkpoint.read_config(dest).get("format") if (dest / "config.json").is_file() else None
            if fmt != checkpoint.FORMAT:
                raise CheckpointError(f"export destination {dest} is not empty and is not a diffucode model folder; "
                                      "export to a new folder")
    except OSError as exc:
        raise CheckpointError(f"export destination {dest}: {exc.strerror or exc}") from exc


def export(run_dir: str | Path, dest: str | Path, *, dtype: torch.dtype = torch.float16, max_total_mb: float = 64.0,
           log=print) -> Path:
    """Write the run's latest checkpoint as an inference folder (float16 safetensors shards < 15 MB,
    tokenizer, config.json with the infill conventions, README.md model card)."""
    run_dir, dest = Path(run_dir), Path(dest)
    ck_dir = ckpt_dir(run_dir)
    if ck_dir is None:
        raise CheckpointError(f"{run_dir} has no checkpoint to export")
    ck = checkpoint.load(ck_dir)
    state = json.loads((ck_dir / "state.json").read_text())
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    index_path = run_dir / "data" / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    model_keys = ("format", "format_version", "model_type", "architecture", "torch_dtype")  # checkpoint.save's own
    meta = {k: v for k, v in ck.meta.items() if k not in model_keys}
    meta.setdefault("training", {})
    meta["training"].update({"steps": state["step"], "tokens_seen": state["tokens"],
                             "train_seconds": round(state.get("train_seconds", 0), 1),
                             "commands": state.get("commands", []), "eval": state.get("last_eval", {}),
                             "data": index.get("stats", {})})
    if run.get("init_from"):
        meta["training"]["init_from"] = run["init_from"]
    check_export_dest(dest)
    dest.mkdir(parents=True, exist_ok=True)
    checkpoint.save(dest, ck.model, ck.tokenizer, meta=meta, dtype=dtype)
    (dest / "README.md").write_text(model_card(ck, state, run, index), encoding="utf-8")
    sizes = {p.name: p.stat().st_size for p in dest.iterdir() if p.is_file()}
    big = [n for n, s in sizes.items() if s >= 15 * 10**6]
    if big:
        raise CheckpointError(f"exported files over 15 MB: {big}")
    total = sum(sizes.values())
    log(f"exported step {state['step']} to {dest}: {len(sizes)} files, {total / 1e6:.1f} MB")
    if total > max_total_mb * 1e6:
        log(f"warning: {total / 1e6:.1f} MB exceeds the {max_total_mb:.0f} MB budget of the embedded model")
    return dest

"""The only module that reads or writes weights: an HF-style folder, safetensors only, versioned.

    folder/
      config.json                      {"format": "diffucode", "format_version": 1, "model": {...}, ...}
      tokenizer.json                   HF `tokenizers` file (tokenizer.py)
      model.safetensors                or model-00001-of-0000N.safetensors + model.safetensors.index.json
      README.md                        optional model card

No pickle anywhere: weights and training state are safetensors, everything else is JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffucode.errors import CheckpointError
from diffucode.model import DiffusionTransformer, ModelConfig
from diffucode.tokenizer import Tokenizer

FORMAT = "diffucode"
FORMAT_VERSION = 1
MAX_SHARD_BYTES = 14 * 2**20  # shards stay under 15 MB so they fit package and transfer limits
INDEX_NAME = "model.safetensors.index.json"

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Checkpoint:
    model: DiffusionTransformer
    tokenizer: Tokenizer
    meta: dict = field(default_factory=dict)  # everything in config.json besides the model config
    path: Path | None = None


# The first words of an interim model's card (training/card.py, cpu_status); models.is_interim looks for them.
INTERIM_MARKER = "**Status: interim.**"

def save(
    folder: str | Path,
    model: DiffusionTransformer,
    tokenizer: Tokenizer,
    *,
    meta: dict | None = None,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> Path:
    """Write model + tokenizer to `folder` (created; existing weight files are replaced).

    `meta` is merged into config.json (training settings, infill conventions such as `infill_pad`).
    `dtype` casts floating tensors on disk (e.g. float16 halves the embedded model's size).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if model.cfg.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(f"model vocab {model.cfg.vocab_size} != tokenizer vocab {tokenizer.vocab_size}")
    tensors = _state_for_disk(model, dtype)
    for old in list(folder.glob("model*.safetensors")) + list(folder.glob(INDEX_NAME)):
        old.unlink()
    shards = _split(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(shards[0], str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(folder / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in shard})
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        _write_json(folder / INDEX_NAME, {"metadata": {"total_size": total}, "weight_map": weight_map})
    tokenizer.save(folder / "tokenizer.json")
    disk_dtype = next(iter(tensors.values())).dtype
    config = {
        **(meta or {}),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": "diffucode",
        "architecture": "DiffusionTransformer",
        "torch_dtype": str(disk_dtype).removeprefix("torch."),
        "model": model.cfg.to_dict(),
    }
    _write_json(folder / "config.json", config)
    for f in folder.glob("model*.safetensors"):
        f.chmod(0o644)  # safetensors writes 0600; a shipped or shared model must be world-readable
    return folder


def read_config(folder: str | Path) -> dict:
    """config.json of a model folder, with clear errors for a missing folder or file."""
    folder = Path(folder)
    path = folder / "config.json"
    try:
        if not folder.exists():
            raise CheckpointError(f"model folder not found: {folder}")
        if not folder.is_dir():
            raise CheckpointError(f"model path is not a folder: {folder}")
        if not path.is_file():
            if (folder / "run.json").is_file() and (folder / "ckpt").is_dir():
                raise CheckpointError(f"{folder} is a training run, not a model folder: export it with "
                                      f"`diffucode train --out {folder} --export-only DEST` and pass DEST")
            raise CheckpointError(f"{folder} has no config.json: not a model folder")
    except OSError as exc:  # e.g. a folder without read permission
        raise CheckpointError(f"cannot read model folder {folder}: {exc.strerror or exc}") from exc
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object, not {type(config).__name__}")
    return config


def check(folder: str | Path) -> dict:
    """What load() checks before it reads a tensor: config.json, the format and its version, the model
    config, tokenizer.json, and weight files that are there and readable. Returns config.json. Cheap, for
    callers that must fail before they start other work (e.g. `diffucode eval` before its run folder)."""
    folder = Path(folder)
    config = read_config(folder)
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{folder} is not a diffucode checkpoint (format={config.get('format')!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{folder} has format_version {version!r}; this diffucode reads up to {FORMAT_VERSION}")
    _model_config(folder, config)
    if not (folder / "tokenizer.json").is_file():
        raise CheckpointError(f"{folder} has no tokenizer.json")
    for path in _weight_files(folder):
        _check_readable(path)
    return config


def load(folder: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Checkpoint:
    """Load a diffucode model folder. Raises CheckpointError with the reason on any problem."""
    folder = Path(folder)
    config = check(folder)
    cfg = _model_config(folder, config)
    tokenizer = Tokenizer.from_file(folder / "tokenizer.json")
    tensors = _read_weights(folder)
    model = DiffusionTransformer(cfg)
    if cfg.tie_embeddings:
        tensors.pop("lm_head.weight", None)
    missing, unexpected = _match_keys(model, tensors)
    if missing or unexpected:
        raise CheckpointError(f"weights in {folder} do not fit the config: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
    try:
        model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {folder} do not fit the config: {str(exc).splitlines()[-1]}") from exc
    if dtype is None:
        dtype = torch.float32  # CPU-safe default; callers pick bf16/fp16 on a GPU
    model.to(device=device, dtype=dtype).eval()
    meta = {k: v for k, v in config.items() if k != "model"}
    return Checkpoint(model=model, tokenizer=tokenizer, meta=meta, path=folder)


def _model_config(folder: Path, config: dict) -> ModelConfig:
    try:
        return ModelConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"bad model config in {folder / 'config.json'}: {exc}") from exc


def folder_size(folder: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


# -- flat tensor files (training state: optimizer moments etc.) -------------------------------------
def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically write a flat dict of tensors as safetensors."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    _check_readable(Path(path))
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


def _check_readable(path: Path) -> None:
    """Open `path` once, for an honest reason: safetensors reports a file that exists but may not be read
    (no read permission) as "No such file or directory"."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from exc


# -- helpers ---------------------------------------------------------------------------------------
def _state_for_disk(model: DiffusionTransformer, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    state = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight" and model.cfg.tie_embeddings:
            continue  # tied to embed.weight; safetensors refuses shared storage, and it is re-tied on load
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.contiguous()
    return state


def _split(tensors: dict[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in tensors.items():
        n = v.numel() * v.element_size()
        if n > limit:
            raise CheckpointError(f"tensor {k} ({n} bytes) is larger than the shard limit {limit}")
        if size + n > limit and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += n
    return shards


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder (one, or the shards its index names); all must exist."""
    index = folder / INDEX_NAME
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read {index}: {exc}") from exc
    elif (folder / "model.safetensors").is_file():
        names = ["model.safetensors"]
    else:
        raise CheckpointError(f"{folder} has no model.safetensors (pickled .bin/.pt weights are not read, by design)")
    for name in names:
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} is missing weight shard {name}")
    return [folder / name for name in names]


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for path in _weight_files(folder):
        tensors.update(load_tensors(path))
    return tensors


def _match_keys(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    if model.cfg.tie_embeddings:
        expected.discard("lm_head.weight")
    return sorted(expected - set(tensors)), sorted(set(tensors) - expected)


def _write_json(path: Path, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def dtype_from_name(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise CheckpointError(f"unknown dtype {name!r}; choose from {', '.join(_DTYPES)}")
    return _DTYPES[name]

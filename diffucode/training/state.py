"""The run's checkpoint (OUT/ckpt/): the latest model folder written by checkpoint.save, plus the training
state beside it (state.safetensors: optimizer moments and RNG; state.json: step, tokens, schedule, data
position, the list of training calls; no pickle), swapped in whole so that a cut-off save never leaves a
broken checkpoint. Also what config.json records of how the model was trained.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from diffucode import checkpoint
from diffucode.errors import CheckpointError
from diffucode.tokenizer import Tokenizer
from diffucode.training.config import TrainConfig
from diffucode.training.masking import MaskingConfig

STATE_VERSION = 1


def ckpt_dir(out: Path) -> Path | None:
    """The latest complete checkpoint folder (ckpt/, or ckpt.old/ if a save was cut off mid-swap)."""
    for name in ("ckpt", "ckpt.old"):
        d = out / name
        if (d / "state.json").is_file() and (d / "config.json").is_file():
            return d
    return None


def save_checkpoint(out: Path, model, opt, tok: Tokenizer, state: dict, meta: dict) -> float:
    """Write ckpt.tmp/ completely, then swap it in (ckpt → ckpt.old → removed). Returns seconds taken."""
    t0 = time.time()
    tmp, cur, old = out / "ckpt.tmp", out / "ckpt", out / "ckpt.old"
    shutil.rmtree(tmp, ignore_errors=True)
    checkpoint.save(tmp, model, tok, meta=meta)
    tensors: dict[str, torch.Tensor] = {}
    names = {p: n for n, p in model.named_parameters()}
    for p, st in opt.state.items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{names[p]}.{k}"] = v
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    checkpoint.save_tensors(tmp / "state.safetensors", tensors)
    (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    if cur.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(cur, old)
    os.replace(tmp, cur)
    shutil.rmtree(old, ignore_errors=True)
    return time.time() - t0


def load_checkpoint(folder: Path, model, opt) -> dict:
    """Restore model weights, optimizer moments and RNG from `folder`; returns state.json's content."""
    ck = checkpoint.load(folder)
    model.load_state_dict(ck.model.state_dict())
    tensors = checkpoint.load_tensors(folder / "state.safetensors")
    names = {n: p for n, p in model.named_parameters()}
    for key, v in tensors.items():
        if key.startswith("opt."):
            pname, slot = key[4:].rsplit(".", 1)
            if pname not in names:
                raise CheckpointError(f"optimizer state for unknown parameter {pname}")
            p = names[pname]
            dev = p.device if slot != "step" or opt.defaults.get("fused") or opt.defaults.get("capturable") else "cpu"
            opt.state[p][slot] = v.to(dev)
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return json.loads((folder / "state.json").read_text())


def saved_state(state: dict, micro: int, accum: int, world: int) -> dict:
    return {**state, "version": STATE_VERSION, "micro_batch": micro, "accum": accum, "world_size": world,
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S")}


def model_meta(out: Path, mcfg: MaskingConfig, cfg: TrainConfig) -> dict:
    """config.json entries besides the model: the infill conventions the engine relies on, and how it
    was trained ("command": the call that created the run; export adds "commands": every training call)."""
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    return {
        "infill": {"pad_tail": True, "pad_token": "<|pad|>", "eos_is_pad": True, "max_extra_pad": mcfg.max_extra_pad,
                   "hole_menu": list(mcfg.hole_menu),
                   "note": "holes = content + a contiguous tail of <|pad|> (masking.py)"},
        "training": {"objective": "masked diffusion: uniform 1/t + variable-length infill + function bodies",
                     "masking": mcfg.to_dict(), "train": asdict(cfg), "command": run.get("command")},
    }


def calls_so_far(state: dict, out: Path, argv: list[str]) -> list[dict]:
    """Every training call of the run so far plus this one: {"step": where it started, "argv": ...}.

    The list starts with the call that created the run folder (run.json's command) when that is not
    this call: a `--prepare-only` call whose data flags the training calls do not repeat, a call
    stopped before its first checkpoint, or the calls of a checkpoint written before calls were
    recorded (of those, only the first is known)."""
    calls = list(state.get("commands") or [])
    if not calls:
        run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
        if run.get("command") and run["command"] != list(argv):
            calls.append({"step": 0, "argv": run["command"]})
    return calls + [{"step": state["step"], "argv": list(argv)}]


def command_line(argv: list[str] | None = None) -> list[str]:
    """This call as `diffucode train FLAGS`: from the argv main() parsed, else from sys.argv (the
    `diffucode train` entry point), where the flags follow the subcommand."""
    if argv is None:
        argv = sys.argv[1:]
        argv = argv[argv.index("train") + 1 :] if "train" in argv else argv
    return ["diffucode", "train", *argv]

"""`diffucode train`'s settings and flags: the config dataclasses' training part, the run-folder rules
for settings, and the argument parser. No torch here: `diffucode train --help` and a bad flag answer
before the training libraries load (cli.py runs the command).
"""

from __future__ import annotations

import argparse
import sysconfig
from dataclasses import dataclass, field, fields

from diffucode.errors import ConfigError
from diffucode.training.corpus import DataConfig
from diffucode.training.masking import MaskingConfig
from diffucode.training.schedule import SCHEDULES

COMPILE_MODES = ("auto", "on", "off")
PRECISIONS = ("auto", "bf16", "fp32")
PRESET_NAMES = ("tiny", "mini", "small", "base")  # model.PRESETS (tests/test_training.py checks they agree)


def _h(help: str, **kw):
    return field(metadata={"help": help}, **kw)


@dataclass(frozen=True)
class TrainConfig:
    """Model shape and optimisation (one CLI flag per field)."""

    preset: str = _h(f"model size: {', '.join(PRESET_NAMES)}", default="small")
    d_model: int = _h("override the preset's width (0: keep)", default=0)
    n_layers: int = _h("override the preset's depth (0: keep)", default=0)
    n_heads: int = _h("override the preset's attention heads (0: keep)", default=0)
    ffn_hidden: int = _h("override the SwiGLU hidden size (0: keep)", default=0)
    seq_len: int = _h("training context in tokens (also the model's max_seq_len)", default=512)
    batch_size: int = _h("rows per optimizer step, all GPUs together", default=256)
    micro_batch: int = _h("rows per forward pass per GPU (0: the whole batch); gradients are accumulated", default=0)
    lr: float = _h("peak learning rate", default=2e-3)
    min_lr_frac: float = _h("the schedule ends at lr * min_lr_frac", default=0.1)
    warmup_steps: int = _h("linear warmup steps (wsd: at the start of every call)", default=200)
    schedule: str = _h("learning-rate schedule: cosine (one horizon for the whole run) or wsd (warmup-stable-decay: "
                       "every call warms up, holds the peak and decays over its last --decay-frac; see schedule.py)",
                       default="cosine")
    decay_frac: float = _h("wsd: share of each call (of its time budget, else of its steps) spent decaying",
                           default=0.2)
    max_steps: int = _h("length of the cosine schedule in steps (0: from --total-tokens or --train-seconds)", default=0)
    total_tokens: float = _h("tokens the schedule is planned for (used when --max-steps is 0)", default=2e9)
    train_seconds: float = _h("plan the schedule for this many seconds of training over all calls; the step count "
                              "is fixed from the speed measured in the first call (overrides --total-tokens)",
                              default=0.0)
    weight_decay: float = _h("AdamW weight decay on matrices", default=0.1)
    beta1: float = _h("AdamW beta1", default=0.9)
    beta2: float = _h("AdamW beta2", default=0.95)
    grad_clip: float = _h("clip the gradient norm to this (0: off)", default=1.0)
    seed: int = _h("seed of initialisation, data order and masks", default=0)
    eval_every: int = _h("evaluate on held-out data every N steps (0: only at the start and the end)", default=1000)
    eval_rows: int = _h("held-out windows in the fixed evaluation set", default=256)
    infill_rows: int = _h("held-out single-line infill checks per evaluation (0: skip)", default=128)
    save_every: int = _h("save a checkpoint every N steps (and always when stopping)", default=2000)
    log_every: int = _h("log every N steps", default=20)
    num_workers: int = _h("DataLoader worker processes building batches", default=6)
    compile: str = _h("torch.compile the training step: auto (on with CUDA; on a CPU for models of 1 M parameters "
                      "or more when a C compiler is found), on, off; "
                      "--compile alone means on, --no-compile means off", default="auto")
    precision: str = _h("bf16 autocast or fp32: auto (bf16 on CUDA, and on a CPU with bf16 dot-product instructions; "
                        "see cpu_runtime.py), bf16, fp32", default="auto")
    threads: int = _h("CPU threads for the training step (0: all cores, shared between the ranks)", default=0)
    peak_tflops: float = _h("peak bf16 TFLOP/s per GPU for MFU (0: from the device name)", default=0.0)

    def __post_init__(self):
        object.__setattr__(self, "compile", compile_mode(self.compile))
        for name, allowed in (("schedule", SCHEDULES), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if not 0 < self.decay_frac <= 1:
            raise ConfigError("--decay-frac must be in (0, 1]")
        if self.threads < 0:
            raise ConfigError("--threads must be >= 0 (0: all cores)")
        for name in ("batch_size", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0")
        for name in ("max_steps", "warmup_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be ≥ 0")


def compile_mode(value) -> str:
    """One of COMPILE_MODES. Runs started before the modes existed stored a bool: True meant "on with
    CUDA" (auto), False off."""
    if isinstance(value, bool):
        return "auto" if value else "off"
    if value not in COMPILE_MODES:
        raise ConfigError(f"--compile must be one of {', '.join(COMPILE_MODES)}, not {value!r}")
    return value


# Settings that shape the model or the data: fixed when a run starts, refused if changed later.
FIXED = {
    "train": ("preset", "d_model", "n_layers", "n_heads", "ffn_hidden", "seq_len", "seed"),
    "data": tuple(f.name for f in fields(DataConfig)),
    "masking": (),
}
SECTIONS = {"data": DataConfig, "masking": MaskingConfig, "train": TrainConfig}
SMOKE = {  # --smoke: a CPU-sized run (explicit flags still win)
    "train": dict(preset="tiny", seq_len=128, batch_size=16, lr=3e-3, warmup_steps=10, max_steps=60, eval_every=30,
                  eval_rows=32, infill_rows=8, save_every=30, log_every=10, num_workers=0, compile="off"),
    "data": dict(vocab_size=1024, tokenizer_sample_mb=2.0, max_files=300, heldout_permille=50),
    "masking": dict(max_body_tokens=48, max_span_tokens=32, hole_menu=(8, 16, 32), max_extra_pad=16),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_fields(group, cls) -> None:
    for f in fields(cls):
        if f.name == "compile":
            _add_compile_flags(group, f)
            continue
        help = f.metadata.get("help", "") + (
            " (default: "
            f"{f.default if not isinstance(f.default, tuple) else ' '.join(map(str, f.default)) or 'none'})")
        if f.type in ("bool", bool):
            group.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help)
        elif isinstance(f.default, tuple):
            group.add_argument(_flag(f.name), nargs="+", default=None, metavar="X", help=help,
                               type=int if f.default and isinstance(f.default[0], int) else str)
        else:
            group.add_argument(_flag(f.name), type=type(f.default), default=None, help=help)


def _add_compile_flags(group, f) -> None:
    """--compile {auto,on,off}; a bare --compile means on and --no-compile off, as before the modes."""
    group.add_argument("--compile", choices=COMPILE_MODES, nargs="?", const="on", default=None,
                       help=f.metadata["help"] + f" (default: {f.default})")
    group.add_argument("--no-compile", dest="compile", action="store_const", const="off",
                       help="the same as --compile off")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True,
                   help="run folder: settings, tokenizer, data, checkpoints, metrics (created; resumed if it "
                        "holds run.json; a folder of other files is refused)")
    p.add_argument("--time-budget", type=float, default=0.0, metavar="SECONDS",
                   help="stop, evaluate and save before this many seconds since the command started (0: no limit)")
    p.add_argument("--budget-margin", type=float, default=15.0, metavar="SECONDS",
                   help="safety margin kept at the end of the time budget (default: 15)")
    p.add_argument("--prepare-only", action="store_true", help="only build corpus, tokenizer and shards")
    p.add_argument("--export", metavar="DIR", default=None,
                   help="after training, export the latest checkpoint to DIR (e.g. diffucode/weights/default)")
    p.add_argument("--export-only", metavar="DIR", default=None,
                   help="skip data and training: export the latest checkpoint to DIR")
    p.add_argument("--smoke", action="store_true",
                   help="a CPU-sized run: tiny model, small corpus, 60 steps (flags given explicitly still win)")
    p.add_argument("--init-from", metavar="FOLDER", default=None,
                   help="start a new run from a model folder's weights and tokenizer (e.g. an exported model)")
    p.add_argument("--data-from", metavar="RUN", default=None,
                   help="start a new run on another run folder's data: its data settings and tokenizer, and its "
                        "data/ linked, not rebuilt (runs that compare models or objectives train on the same tokens)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--data-workers", type=int, default=0, help="processes for data preparation (default: all cores)")
    p.add_argument("--steps", type=int, default=0,
                   help="stop after this many steps in this call (0: until the schedule or the budget ends)")
    p.add_argument("--quiet", action="store_true", help="log only to metrics.jsonl")
    _add_fields(p.add_argument_group("data (fixed when a run starts)"), DataConfig)
    _add_fields(p.add_argument_group("objective (masking.py; may change between calls)"), MaskingConfig)
    _add_fields(p.add_argument_group("model and optimisation"), TrainConfig)


def register(subparsers, run) -> None:
    """Add `diffucode train` to the main CLI; `run(args)` trains (training/cli.py's run: imported only when the
    command runs, so `--help` and flag errors answer without loading torch)."""
    p = subparsers.add_parser(
        "train", help="train diffucode's own model (corpus → tokenizer → shards → training → export)",
        description="Prepare data and train (or resume training) a masked-diffusion code model in --out. "
                    "The first call fixes the settings in OUT/run.json; later calls resume. Example (one H100, "
                    "10-minute slices): diffucode train --out runs/small --preset small --time-budget 540",
    )
    add_arguments(p)
    p.set_defaults(func=run, on_interrupt="the run folder keeps its last checkpoint: rerun to resume")


def resolve(args: argparse.Namespace, stored: dict | None) -> tuple[DataConfig, MaskingConfig, TrainConfig]:
    """Defaults ← (--smoke) ← the run's stored settings ← flags given now. Changing a FIXED setting of an
    existing run is refused."""
    out = {}
    for sec, cls in SECTIONS.items():
        vals = {f.name: f.default for f in fields(cls)}
        if getattr(args, "smoke", False):
            vals.update(SMOKE[sec])
            if sec == "data":
                vals["sources"] = (sysconfig.get_paths()["stdlib"],)  # no site-packages: a quicker scan
        if stored:
            vals.update({k: v for k, v in stored.get(sec, {}).items() if k in vals})
        for f in fields(cls):
            given = getattr(args, f.name, None)
            if given is None:
                continue
            if isinstance(f.default, tuple):
                given = tuple(given)
            if (stored and f.name in FIXED[sec] and f.name in stored.get(sec, {})
                    and not same_setting(stored[sec][f.name], given)):
                raise ConfigError(f"--{f.name.replace('_', '-')} was {stored[sec][f.name]!r} when this run started; "
                                  "it cannot change (use a new --out)")
            vals[f.name] = given
        out[sec] = (cls.from_dict(vals) if hasattr(cls, "from_dict")
                    else cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in vals.items()}))
    return out["data"], out["masking"], out["train"]


def same_setting(a, b) -> bool:
    """Whether two values of a setting agree (a list read from run.json equals the tuple a flag gives)."""
    return _norm(a) == _norm(b)


def _norm(v):
    return list(v) if isinstance(v, (tuple, list)) else v

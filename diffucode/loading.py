"""Find and load a model by name: the embedded default, a local folder, or a hub id.

An Engine bundles what the infill API needs: a Denoiser, a tokenizer (encode/decode), and the
checkpoint's infill conventions (e.g. whether holes may be padded with <|pad|>).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from diffucode import checkpoint
from diffucode.devices import resolve_device
from diffucode.denoiser import NativeDenoiser
from diffucode.engine import Engine, TextTokenizer  # noqa: F401 (re-exported: where loaders' callers find them)
from diffucode.errors import CheckpointError, ConfigError

EMBEDDED = Path(__file__).parent / "weights" / "default"
DEFAULT_NAME = "default"


def resolve(name_or_path: str | os.PathLike | None) -> Path:
    """A model folder on disk for `name_or_path` (None or "default": the embedded model)."""
    if name_or_path is None or str(name_or_path) == DEFAULT_NAME:
        if not (EMBEDDED / "config.json").is_file():
            raise CheckpointError(
                f"no embedded model in this installation ({EMBEDDED}); pass --model FOLDER (see `diffucode models`)"
            )
        return EMBEDDED
    p = Path(name_or_path).expanduser()
    if p.exists() or str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") != 1:
        return p  # a local path (checkpoint.read_config reports what is wrong with it)
    return _from_hub(str(name_or_path))


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise CheckpointError(f"{repo_id!r} is not a local folder, and huggingface_hub is not installed to "
                              "fetch it") from exc
    try:
        patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.py", "*.md"]
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown repo, gated: one clear line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise CheckpointError(f"{repo_id!r} is not a local folder, and the hub cannot give it "
                              f"(offline or unknown id?): {type(exc).__name__}: {first}") from exc


def check_model(name_or_path: str | os.PathLike | None = None, *, family: str | None = None) -> Path:
    """The model folder load_engine would load, checked without reading the weights: it exists and holds a
    config.json; a diffucode folder (unless `family` says otherwise) also its tokenizer and readable
    weight files. Raises CheckpointError. For callers that must fail before they start other work."""
    folder = resolve(name_or_path)
    config = checkpoint.read_config(folder)
    if (config.get("format") or config.get("model_type")) == checkpoint.FORMAT and not family:
        checkpoint.check(folder)
    return folder


def load_engine(
    name_or_path: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    family: str | None = None,
    trust_remote_code: bool = False,
    quantize: str | None = None,
    compile: str = "none",
) -> Engine:
    """Load a model for inference. Raises CheckpointError with the reason when it cannot.

    diffucode's own folders load here; public checkpoints of known families (Dream/DiffuCoder, LLaDA,
    DiffusionGemma; `family` overrides detection) load through diffucode.families (needs transformers).
    quantize="int8": dynamic int8 quantization of the linear layers, on the CPU (benchmarks/bench_engine.py
    and bench_laptop.py measure whether it pays on a machine); "auto": int8 where it measures faster on
    this CPU at load time (`pick_quantization`; `_quantize_public` for public checkpoints), else the float
    model; nothing on a GPU or with `compile`. `Engine.runtime` records the choice. compile: a
    torch.compile mode for diffucode's own models (see denoiser.NativeDenoiser); the compilation
    happens here, in a warm-up.
    """
    _check_options(quantize, compile)
    device = resolve_device(device)
    t0 = time.perf_counter()
    folder = resolve(name_or_path)
    config = checkpoint.read_config(folder)
    fmt = config.get("format") or config.get("model_type")
    dtype = _torch_dtype(dtype)
    if fmt == checkpoint.FORMAT and family:
        raise ConfigError(f"{folder} is a diffucode model folder: --family {family} applies to public checkpoints "
                          "only; leave it out")
    if fmt != checkpoint.FORMAT:
        return _load_public(folder, config, device=device, dtype=dtype, family=family,
                            trust_remote_code=trust_remote_code, quantize=quantize, compile=compile,
                            name=str(name_or_path or folder))
    ckpt = checkpoint.load(folder, device=device, dtype=dtype)
    ckpt.model, runtime = _quantized(ckpt.model, ckpt.tokenizer, quantize, compile=compile, device=device)
    name = DEFAULT_NAME if folder == EMBEDDED else str(name_or_path)
    denoiser = NativeDenoiser(ckpt.model, ckpt.tokenizer, compile=compile)
    if compile != "none":
        _compile_now(denoiser, compile)
    return Engine(
        denoiser=denoiser,
        tokenizer=ckpt.tokenizer,
        name=name,
        path=folder,
        meta=ckpt.meta,
        load_seconds=time.perf_counter() - t0,
        runtime=runtime,
    )


def _check_options(quantize: str | None, compile: str) -> None:
    """Raise ConfigError for an unknown quantization or one that does not combine with `compile`."""
    if quantize not in (None, *QUANTIZE_MODES):
        raise ConfigError(f"unknown quantization {quantize!r}; choose from {', '.join(QUANTIZE_MODES)}")
    if quantize == "int8" and compile != "none":
        raise ConfigError("compile and int8 quantization do not combine (dynamo splits the graph at every "
                          "quantized layer); choose one")


def _torch_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A dtype given by name (bf16, fp16, fp32) as a torch.dtype; other values as they are."""
    if isinstance(dtype, str):
        from diffucode.families.hf import DTYPES

        if dtype.lower() not in DTYPES:
            raise CheckpointError(f"unknown dtype {dtype!r}; choose from bf16, fp16, fp32")
        dtype = DTYPES[dtype.lower()]
    return dtype


def _load_public(folder: Path, config: dict, *, device: torch.device, dtype: torch.dtype | None,
                 family: str | None, trust_remote_code: bool, quantize: str | None, compile: str,
                 name: str) -> Engine:
    """A public checkpoint through diffucode.families; int8 quantizes its linear layers on the CPU (compile
    applies to diffucode's own models only)."""
    from diffucode import families

    if compile != "none":
        raise ConfigError("compile applies to diffucode's own models only")
    if quantize == "int8" and device.type != "cpu":
        raise ConfigError("int8 quantization runs on the CPU only")
    engine = families.load(folder, config, device=device, dtype=dtype, family=family,
                           trust_remote_code=trust_remote_code, name=name)
    engine.runtime = {"quantize": "none"}
    if quantize == "int8" or (quantize == "auto" and device.type == "cpu"):
        engine.runtime = _quantize_public(engine.denoiser.model, chosen=quantize)
    return engine


def _quantize_public(model: torch.nn.Module, *, chosen: str) -> dict:
    """Dynamic int8 of a transformers model's linear layers (float32 weights), in place; with "auto" only
    where the linear layers of its first decoder layer (attention and MLP) run at least
    AUTO_INT8_MIN_SPEEDUP times faster in int8 on this CPU (timed on a copy of that layer alone: a copy
    of the whole model could double the memory)."""
    runtime = {"quantize": "int8"}
    if next(model.parameters()).dtype != torch.float32:
        if chosen == "int8":
            raise ConfigError("int8 quantization starts from float32 weights: leave --dtype out (fp32 on the CPU)")
        return {"quantize": "none", "chosen_by": "auto", "reason": "weights not in float32"}
    if chosen == "auto":
        layers = getattr(getattr(model, "model", None), "layers", None)  # transformers decoders: model.layers
        first = layers[0] if layers is not None and len(layers) else None
        if first is None:
            return {"quantize": "none", "chosen_by": "auto", "int8_speedup": 0.0}
        layer = copy.deepcopy(first).float()
        linears = [c for c in layer.modules() if isinstance(c, torch.nn.Linear)]
        qlinears = [c for c in quantize_int8(copy.deepcopy(layer)).modules() if _is_int8_linear(c)]
        float_ms, int8_ms = _best_ms([_chain(linears), _chain(qlinears)], repeats=7)
        speedup = round(float_ms / int8_ms, 2) if int8_ms > 0 else 0.0
        runtime = {"quantize": "int8" if speedup >= AUTO_INT8_MIN_SPEEDUP else "none", "chosen_by": "auto",
                   "int8_speedup": speedup}
        if runtime["quantize"] == "none":
            return runtime
    quantize_int8(model, release=True)
    return runtime


def _is_int8_linear(module: torch.nn.Module) -> bool:
    return type(module).__name__ == "Linear" and type(module).__module__.startswith("torch.ao.nn.quantized")


def _chain(linears: list) -> Callable[[], None]:
    """A zero-argument call running each linear layer once on 128 rows of its input width."""
    inputs = [torch.randn(1, 128, lin.in_features) for lin in linears]

    def run() -> None:
        for lin, x in zip(linears, inputs):
            lin(x)
    return run


def _quantized(model: torch.nn.Module, tokenizer, quantize: str | None, *, compile: str,
               device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The model to serve under `quantize` (see load_engine) and the runtime record of the choice."""
    runtime = {"quantize": "none"}
    if quantize == "int8":
        model = quantize_int8(model)
        runtime["quantize"] = "int8"
    elif quantize == "auto" and compile == "none" and device.type == "cpu":
        model, runtime = pick_quantization(model, tokenizer)
    return model, runtime


def _compile_now(denoiser: NativeDenoiser, compile: str) -> None:
    """torch.compile the denoiser in a warm-up, so the first request does not pay for it."""
    # Compiled versions are kept per function, not per model, and dynamo stops compiling a function
    # after 8: forget those of models loaded before (one compiled engine per process at a time).
    torch._dynamo.reset()
    try:
        denoiser.warm_up()
    except Exception as exc:  # e.g. no C compiler for inductor's CPU kernels: one line, not a compiler trace
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ConfigError(f"torch.compile (mode {compile}) failed: {type(exc).__name__}: {reason}; "
                          "use compile none") from exc


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:
        return False


def quantize_int8(model: torch.nn.Module, *, release: bool = False) -> torch.nn.Module:
    """Dynamic int8 quantization of every nn.Linear (weights int8, activations quantized per call), in
    place: `model` is consumed (pass a copy to keep the float model). CPU only.

    release=True quantizes one layer at a time and hands each float weight's memory back to the
    system as soon as its int8 copy exists (`_release`), so the peak stays near the float model's size
    instead of float + int8 (a 0.5 B checkpoint: 2.4 instead of 3.2 GiB)."""
    import warnings

    if next(model.parameters()).device.type != "cpu":
        raise ConfigError("int8 quantization runs on the CPU only")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        if not release:
            return torch.ao.quantization.quantize_dynamic(model.float(), {torch.nn.Linear}, dtype=torch.qint8,
                                                          inplace=True)
        shared = _shared_storages(model)
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if type(child) is torch.nn.Linear:
                    child.qconfig = torch.ao.quantization.default_dynamic_qconfig
                    setattr(module, name, torch.ao.nn.quantized.dynamic.Linear.from_float(child))
                    if child.weight.data_ptr() not in shared:
                        _release(child.weight)
    return model


def _shared_storages(model: torch.nn.Module) -> set[int]:
    """Data pointers used by more than one parameter (tied weights): their memory must stay."""
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        seen[p.data_ptr()] = seen.get(p.data_ptr(), 0) + 1
    return {ptr for ptr, n in seen.items() if n > 1}


def _release(weight: torch.Tensor) -> None:
    """Tell the kernel a float weight that will never be read again is not needed (Linux madvise
    MADV_DONTNEED on the whole pages inside it): pages of a memory-mapped checkpoint are dropped, anonymous
    ones freed. Elsewhere nothing happens and the memory goes when Python frees the tensor."""
    import ctypes
    import mmap
    import sys

    if not sys.platform.startswith("linux"):
        return
    start, end = weight.data_ptr(), weight.data_ptr() + weight.numel() * weight.element_size()
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages only: never a neighbour's bytes
    last = end // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        ctypes.CDLL(None).madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 4)  # MADV_DONTNEED


QUANTIZE_MODES = ("none", "int8", "auto")
AUTO_INT8_MIN_SPEEDUP = 1.15  # "auto" keeps the float model unless int8 is clearly faster


def pick_quantization(model: torch.nn.Module, tokenizer, *, tokens: int = 256, positions: int = 16,
                      repeats: int = 7) -> tuple[torch.nn.Module, dict]:
    """quantize="auto": time the float model and its int8 copy on the shape an editor request has
    (one row of `tokens`, logits at `positions`), best of `repeats` interleaved runs, and keep int8 only when it is at
    least AUTO_INT8_MIN_SPEEDUP times faster. Whether it pays depends on the CPU (VNNI and bf16
    instructions, cores, caches): benchmarks/bench_engine.py measured 1.00x on one 2-core machine and
    2.4x per forward on another. Costs a few forwards at load (~0.2 s for the embedded model)."""
    T = min(tokens, model.cfg.max_seq_len)
    positions = max(1, min(positions, T - 1))
    quantized = quantize_int8(copy.deepcopy(model))  # a copy: the float model stays as it is
    dens = [NativeDenoiser(m, tokenizer) for m in (model, quantized)]
    ids = torch.full((1, T), dens[0].mask_id, dtype=torch.long)
    pos = torch.arange(T - positions, T)[None]
    float_ms, int8_ms = _best_ms([lambda den=den: den.logits(ids, pos) for den in dens], repeats)
    speedup = round(float_ms / int8_ms, 2) if int8_ms > 0 else 0.0
    use = speedup >= AUTO_INT8_MIN_SPEEDUP
    return (quantized if use else model), {"quantize": "int8" if use else "none", "chosen_by": "auto",
                                           "int8_speedup": speedup,
                                           "forward_ms": round(int8_ms if use else float_ms, 2)}


def _best_ms(calls, repeats: int) -> list[float]:
    """Best time of each zero-argument call, in ms, the runs interleaved (so a burst of load elsewhere on
    the machine slows both, not one)."""
    best = [math.inf] * len(calls)
    with torch.no_grad():
        for call in calls:
            call()  # warm-up
        for _ in range(repeats):
            for i, call in enumerate(calls):
                t0 = time.perf_counter()
                call()
                best[i] = min(best[i], time.perf_counter() - t0)
    return [b * 1e3 for b in best]


def is_interim(folder: Path | None) -> bool:
    """Does the model's card say it is an interim model (trained only on a CPU: training/card.py, cpu_status)?"""
    try:
        return folder is not None and \
            checkpoint.INTERIM_MARKER in (Path(folder) / "README.md").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def _describe(folder: Path, cfg: dict) -> dict:
    """Size, format, dtype, width, depth and context of a model folder: diffucode's own config.json
    (`model`) or a transformers one (hidden_size, num_hidden_layers, torch_dtype or its newer name dtype)."""
    own = cfg.get("model") if isinstance(cfg.get("model"), dict) else None
    m = own or cfg
    pick = (lambda *keys: next((m[k] for k in keys if isinstance(m.get(k), (int, str))), None))
    return dict(size_bytes=checkpoint.folder_size(folder), format=cfg.get("format") or cfg.get("model_type"),
                dtype=cfg.get("torch_dtype") or cfg.get("dtype"), d_model=pick("d_model", "hidden_size"),
                n_layers=pick("n_layers", "num_hidden_layers"), context=pick("max_seq_len", "max_position_embeddings"),
                interim=is_interim(folder))


def available() -> list[dict]:
    """What `diffucode models` lists: the embedded model and the model folders (with a config.json) under
    $DIFFUCODE_MODELS."""
    rows = []
    candidates = [(DEFAULT_NAME, EMBEDDED)]
    root = os.environ.get("DIFFUCODE_MODELS")
    try:
        if root and Path(root).is_dir():
            candidates += [(str(p), p) for p in sorted(Path(root).iterdir()) if _is_dir(p)]
    except OSError as exc:
        raise CheckpointError(f"cannot list DIFFUCODE_MODELS={root}: {exc.strerror or exc}") from exc
    for name, folder in candidates:
        try:
            present = (folder / "config.json").is_file()
        except OSError as exc:  # e.g. a folder without read permission
            rows.append({"name": name, "path": str(folder), "present": False,
                         "error": f"cannot read: {exc.strerror or exc}"})
            continue
        if not present and name != DEFAULT_NAME:
            continue  # a folder under $DIFFUCODE_MODELS that is not a model (a training run, notes, ...)
        row = {"name": name, "path": str(folder), "present": present}
        if row["present"]:
            try:
                row.update(_describe(folder, checkpoint.read_config(folder)))
            except (CheckpointError, OSError) as exc:
                row["error"] = str(exc)
        rows.append(row)
    from diffucode.families import hub_models  # public checkpoints already in the Hugging Face cache

    return rows + hub_models()

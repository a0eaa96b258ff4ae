"""Public masked-diffusion checkpoints behind diffucode's Denoiser protocol, one small module per family.

    dream.py            Dream-v0, Dream-Coder, DiffuCoder, DreamOn: Qwen2 weights, full attention, logits shifted by one
    llada.py            LLaDA 8B / 1.5: LLaMA layers (renamed weights), full attention, no shift
    open_dcoder.py      Open-dCoder 0.5B: a plain Qwen2 checkpoint whose tokenizer has <M>; full attention, shifted
    coda.py             CoDA 1.7B: Qwen3 weights, full attention, shifted
    a2d.py              dLLM Tiny-A2D MDLM (Qwen2.5-Coder-0.5B, Qwen3-0.6B adapted): full attention, no shift
    a2d_bd3lm.py        dLLM Tiny-A2D BD3LM: the same format, block diffusion; complete only
    sdar.py             SDAR 1.7B-8B: Qwen3 weights, block diffusion; complete only
    diffusion_gemma.py  DiffusionGemma: transformers' own classes and generate; complete only
    hf.py               shared: lazy transformers import, dtype/device, memory estimate, tokenizer, denoiser
    masked_qwen.py      shared by the Qwen-based families: config, weights into Qwen2/Qwen3ForCausalLM, specials
    blockwise.py        a Qwen decoder run block-causally with an exact K/V cache (diffucode/blocks.py decodes)

`load(folder, config, ...)` returns a `diffucode.engine.Engine`; the sampler and infill code never learn
which family runs underneath. transformers is imported only when one of these models is loaded.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import torch

from diffucode.devices import resolve_device
from diffucode.errors import CheckpointError, ConfigError

FAMILIES = ("dream", "llada", "open_dcoder", "coda", "a2d", "a2d_bd3lm", "sdar", "diffusion_gemma")

# Names a user may pass to --family, and the config.json fields each family publishes.
_ALIASES = {
    "dream": "dream", "diffucoder": "dream", "dream-coder": "dream", "dreamcoder": "dream", "dreamon": "dream",
    "llada": "llada",
    "open_dcoder": "open_dcoder", "open-dcoder": "open_dcoder", "opendcoder": "open_dcoder",
    "coda": "coda", "a2d": "a2d", "mdlm": "a2d", "a2d_mdlm": "a2d", "bd3lm": "a2d_bd3lm", "a2d_bd3lm": "a2d_bd3lm",
    "sdar": "sdar",
    "diffusion_gemma": "diffusion_gemma", "diffusion-gemma": "diffusion_gemma", "diffusiongemma": "diffusion_gemma",
}
# A "qwen2" folder is taken for Open-dCoder, the one diffusion family saved as a plain Qwen2 checkpoint; its
# loader refuses a tokenizer without Open-dCoder's mask token (an autoregressive Qwen2).
_MODEL_TYPES = {"dream": "dream", "llada": "llada", "diffusion_gemma": "diffusion_gemma", "qwen2": "open_dcoder",
                "coda": "coda", "a2d-qwen2": "a2d", "a2d-qwen3": "a2d", "sdar": "sdar"}
_ARCHITECTURES = {"DreamModel": "dream", "LLaDAModelLM": "llada", "DiffusionGemmaForBlockDiffusion": "diffusion_gemma",
                  "CoDALanguageModel": "coda", "SDARForCausalLM": "sdar", "A2DQwen2LMHeadModel": "a2d",
                  "A2DQwen3LMHeadModel": "a2d"}

# The authors' published sampling settings, as InfillSettings fields (`--preset NAME`). steps equal to
# max_new_tokens means one token per forward (the sampler caps steps at the number of masks).
# Dream, DiffuCoder and CoDA decode with Dream's diffusion_generate: schedule "linear", and top_k 50, which
# transformers' generation defaults hand it unless the caller passes top_k (tests/test_parity.py replays it).
FAMILY_PRESETS: dict[str, dict] = {
    # apple/ml-diffucoder README: max_new_tokens=256, steps=256 (TOKEN_PER_STEP=1), top_p=0.95, alg="entropy".
    "diffucoder-base": {"steps": 256, "max_new_tokens": 256, "strategy": "entropy", "schedule": "linear",
                        "temperature": 0.2, "top_p": 0.95, "top_k": 50},
    "diffucoder-instruct": {"steps": 256, "max_new_tokens": 256, "strategy": "entropy", "schedule": "linear",
                            "temperature": 0.4, "top_p": 0.95, "top_k": 50},  # also cpGRPO (0.3-0.4 for instruct)
    # Dream-Coder README quickstart: max_new_tokens=768, steps=768, temperature=0.1, top_p=0.95, alg="entropy".
    "dream-coder": {"steps": 768, "max_new_tokens": 768, "strategy": "entropy", "schedule": "linear",
                    "temperature": 0.1, "top_p": 0.95, "top_k": 50},
    # Dream-v0-Instruct README: max_new_tokens=512, steps=512, temperature=0.2, top_p=0.95, alg="entropy".
    "dream-v0": {"steps": 512, "max_new_tokens": 512, "strategy": "entropy", "schedule": "linear",
                 "temperature": 0.2, "top_p": 0.95, "top_k": 50},
    # LLaDA generate.py: low-confidence remasking, temperature 0, gen_length=steps=128; the instruct chat
    # example uses block_length=32 (semi-autoregressive blocks), the base default one block.
    "llada": {"steps": 128, "max_new_tokens": 128, "strategy": "confidence", "temperature": 0.0},
    "llada-instruct": {"steps": 128, "max_new_tokens": 128, "strategy": "confidence", "temperature": 0.0,
                       "block_length": 32},
    # Open-dLLM's completion eval (eval/eval_completion): alg p2, steps 128, max_new_tokens 128, temperature 0.8,
    # top_k 200; its infilling eval: p2, steps 64, temperature 0.6, top_p 0.95.
    "open-dcoder": {"steps": 128, "max_new_tokens": 128, "schedule": "remask", "temperature": 0.8, "top_k": 200},
    "open-dcoder-infill": {"steps": 64, "schedule": "remask", "temperature": 0.6, "top_p": 0.95},
    # CoDA's lm_eval runs (evaluation/lm_eval): max_new_tokens 768, steps 768, temperature 0.1, top_p 0.9, entropy.
    "coda": {"steps": 768, "max_new_tokens": 768, "strategy": "entropy", "schedule": "linear", "temperature": 0.1,
             "top_p": 0.9},
    # SDAR's evaluation (configs/eval_sdar_hf.py): greedy, blocks of the model's size (4), 4 steps per block of 4
    # (one token per forward), static low-confidence; its speed mode commits every token above 0.9 ("sdar-fast").
    "sdar": {"steps": 256, "max_new_tokens": 256, "temperature": 0.0},
    "sdar-fast": {"steps": 256, "max_new_tokens": 256, "temperature": 0.0, "threshold": 0.9},
    # dLLM's A2D evaluation commands (examples/a2d/README.md): max_new_tokens=256, steps=256, temperature 0,
    # block_size 256 (one block) for MDLM and 32 (the model's block) for BD3LM; dLLM's rounded schedule.
    "a2d-mdlm": {"steps": 256, "max_new_tokens": 256, "schedule": "rounded", "temperature": 0.0},
    "a2d-bd3lm": {"steps": 256, "max_new_tokens": 256, "schedule": "rounded", "temperature": 0.0},
    # DiffusionGemma: its own sampler; only these fields map (generation_config.json sets the rest).
    "diffusion-gemma": {"max_new_tokens": 256},
}


# The checkpoints each family was built and tested for (`diffucode models` lists them): hub id, family, size,
# the jobs it does, its preset, and the quality its authors report (HumanEval / MBPP pass@1, their settings).
KNOWN_MODELS: tuple[dict, ...] = (
    dict(hub="fredzzp/open-dcoder-0.5B", family="open_dcoder", params="0.5 B", jobs="infill, rewrite, complete",
         preset="open-dcoder", reported="HumanEval 20.8, MBPP 16.7 (Open-dLLM README)"),
    dict(hub="dllm-hub/Qwen2.5-Coder-0.5B-Instruct-diffusion-mdlm-v0.1", family="a2d", params="0.5 B",
         jobs="infill, rewrite, complete", preset="a2d-mdlm",
         reported="HumanEval 28.1, MBPP 23.0 (dLLM, examples/a2d)"),
    dict(hub="dllm-hub/Qwen2.5-Coder-0.5B-Instruct-diffusion-bd3lm-v0.1", family="a2d_bd3lm", params="0.5 B",
         jobs="complete", preset="a2d-bd3lm", reported="HumanEval 39.0, MBPP 33.2 (dLLM, examples/a2d)"),
    dict(hub="dllm-hub/Qwen3-0.6B-diffusion-mdlm-v0.1", family="a2d", params="0.6 B",
         jobs="infill, rewrite, complete", preset="a2d-mdlm",
         reported="HumanEval 30.5, MBPP 29.2 (dLLM, examples/a2d)"),
    dict(hub="dllm-hub/Qwen3-0.6B-diffusion-bd3lm-v0.1", family="a2d_bd3lm", params="0.6 B", jobs="complete",
         preset="a2d-bd3lm", reported="HumanEval 46.3, MBPP 38.2 (dLLM paper, arXiv 2602.22661)"),
    dict(hub="Salesforce/CoDA-v0-Instruct", family="coda", params="1.7 B", jobs="infill, rewrite, complete",
         preset="coda", reported="HumanEval 54.3, MBPP 47.2 (CoDA README)"),
    dict(hub="JetLM/SDAR-1.7B-Chat", family="sdar", params="1.7 B", jobs="complete", preset="sdar",
         reported="HumanEval 61.6, MBPP 61.1 (SDAR README)"),
    dict(hub="apple/DiffuCoder-7B-cpGRPO", family="dream", params="7.6 B", jobs="infill, rewrite, complete",
         preset="diffucoder-instruct", reported="HumanEval 73.2, MBPP 78.6 (DiffuCoder paper)"),
    dict(hub="Dream-org/Dream-Coder-v0-Instruct-7B", family="dream", params="7.6 B", jobs="infill, rewrite, complete",
         preset="dream-coder", reported="HumanEval 82.9, MBPP 79.6 (Dream-Coder README)"),
    dict(hub="GSAI-ML/LLaDA-8B-Instruct", family="llada", params="8 B", jobs="infill, rewrite, complete",
         preset="llada-instruct", reported="HumanEval 49.4 (LLaDA paper)"),
    dict(hub="google/diffusiongemma-26B-A4B-it", family="diffusion_gemma", params="26 B (4 B active)",
         jobs="complete", preset="diffusion-gemma", reported="—"),
)


def default_preset(family: str, name: str = "") -> str:
    """The preset matching a checkpoint's family and name (e.g. "...DiffuCoder-7B-Instruct")."""
    n = name.lower()
    if family == "dream":
        if "diffucoder" in n:
            return "diffucoder-base" if "base" in n else "diffucoder-instruct"
        return "dream-coder" if "coder" in n else "dream-v0"
    if family == "llada":
        return "llada" if "base" in n else "llada-instruct"
    if family in ("open_dcoder", "coda", "sdar"):
        return family.replace("_", "-")
    if family in ("a2d", "a2d_bd3lm"):
        return "a2d-bd3lm" if family == "a2d_bd3lm" else "a2d-mdlm"
    return "diffusion-gemma"


def preset_settings(name: str, **given) -> dict:
    """InfillSettings keyword arguments: preset `name`, overridden by the fields the user gave."""
    if name not in FAMILY_PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(FAMILY_PRESETS)}")
    # The authors decode without diffucode's threshold commits and K/V cache: a preset turns them off
    # unless given.
    return {"threshold": None, "cache_refresh": None, "schedule": "even", **FAMILY_PRESETS[name],
            **{k: v for k, v in given.items() if v is not None}}


def detect_family(config: dict, override: str | None = None, name: str = "") -> str:
    """The family of a checkpoint from its config.json (model_type, architectures), or `override`.
    dLLM's A2D MDLM and BD3LM checkpoints share one format: `name` (hub id or folder) containing "bd3lm"
    tells the block-diffusion one."""
    if override:
        fam = _ALIASES.get(override.strip().lower())
        if fam is None:
            raise ConfigError(f"unknown model family {override!r}; choose from {', '.join(FAMILIES)}")
        return fam
    mtype = str(config.get("model_type") or "").lower()
    fam = _MODEL_TYPES.get(mtype) or next(
        (_ARCHITECTURES[a] for a in config.get("architectures") or [] if a in _ARCHITECTURES), None)
    if fam == "a2d" and "bd3lm" in f"{name} {config.get('_name_or_path', '')}".lower():
        return "a2d_bd3lm"
    if fam is not None:
        return fam
    raise CheckpointError(
        f"model type {config.get('model_type')!r} (architectures {config.get('architectures')}) is not a known "
        f"masked-diffusion family ({', '.join(FAMILIES)}); pass --family if it is one of them"
    )


def load(
    folder: str | Path,
    config: dict,
    *,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype | str | None = None,
    family: str | None = None,
    trust_remote_code: bool = False,
    name: str | None = None,
):
    """Load a public checkpoint folder as a `diffucode.engine.Engine`.

    Args:
        folder: a local model folder (config.json, *.safetensors, tokenizer files).
        config: its parsed config.json.
        device: "cpu", "cuda", "cuda:1", "mps", or None/"auto" (cuda, then mps, then cpu).
        dtype: torch dtype or "bf16"/"fp16"/"fp32"; None: bf16 on CUDA (fp16 without bf16), fp16 on MPS, fp32 on CPU.
        family: override detection from config.json (see FAMILIES and aliases).
        trust_remote_code: run the checkpoint's own Python modelling code instead of transformers' classes.
            Never the default: it executes code downloaded with the weights.
        name: what the user called the model (hub id or path), for messages and `default_preset`.
    """
    from diffucode.engine import Engine
    from diffucode.families import hf

    t0 = time.perf_counter()
    folder = Path(folder)
    fam = detect_family(config, family, f"{Path(name or '').name} {folder.name}")
    dev = resolve_device(device)
    dt = hf.pick_dtype(dev, dtype)
    need = hf.estimate_bytes(folder, dt)
    hf.check_memory(need, dev, folder)
    module = importlib.import_module(f"diffucode.families.{fam}")
    den, tok, meta = module.load(folder, config, device=dev, dtype=dt, trust_remote_code=trust_remote_code)
    label = name or str(folder)
    meta = {**meta, "family": fam, "model_type": config.get("model_type"), "dtype": str(dt).replace("torch.", ""),
            "device": str(dev), "memory_bytes": need, "preset": default_preset(fam, label),
            "trust_remote_code": trust_remote_code}
    return Engine(denoiser=den, tokenizer=tok, name=label, path=folder, meta=meta,
                  load_seconds=time.perf_counter() - t0, complete=module.COMPLETE,
                  refuses=dict(meta.get("not_supported") or {}))


def instruction_prompt(engine, instruction: str, code: str = "") -> str:
    """Prompt text for an instruction-following rewrite: the checkpoint's own chat template (e.g. Qwen's
    for DiffuCoder-Instruct) with the instruction and the code as the user turn, opened for the answer.

    ConfigError for models without chat ability (base checkpoints, diffucode's own models, DiffusionGemma).
    """
    chat = getattr(engine.tokenizer, "chat", None)
    if chat is None or not engine.meta.get("chat"):
        raise ConfigError(f"{engine.name} has no chat template: instructions (--instruction) need an instruct "
                          "checkpoint")
    user = instruction.strip() + (f"\n\n```\n{code.rstrip()}\n```" if code else "")
    return chat([{"role": "user", "content": user}])


def hub_models(cache_dir: str | Path | None = None) -> list[dict]:
    """Models of known families in the local Hugging Face cache (no network), for `diffucode models`."""
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        return []
    try:
        info = scan_cache_dir(cache_dir)
    except Exception:  # no cache yet, unreadable cache: nothing to list
        return []
    import json

    rows = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        rev = max(repo.revisions, key=lambda r: r.last_modified)
        cfg_path = Path(rev.snapshot_path) / "config.json"
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            fam = detect_family(cfg, name=repo.repo_id)
            if fam == "open_dcoder" and '"<M>"' not in _text(Path(rev.snapshot_path) / "tokenizer_config.json"):
                continue  # an autoregressive Qwen2, not Open-dCoder
        except (OSError, ValueError, CheckpointError):
            continue
        text = cfg.get("text_config") or cfg  # DiffusionGemma nests its sizes
        rows.append({"name": repo.repo_id, "path": str(rev.snapshot_path), "present": True, "family": fam,
                     "format": cfg.get("model_type"), "size_bytes": rev.size_on_disk,
                     "dtype": str(cfg.get("torch_dtype") or cfg.get("dtype") or "?"),
                     "d_model": text.get("hidden_size") or text.get("d_model"),
                     "n_layers": text.get("num_hidden_layers") or text.get("n_layers"),
                     "context": text.get("max_position_embeddings") or text.get("max_sequence_length"),
                     "preset": default_preset(fam, repo.repo_id)})
    return rows


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""

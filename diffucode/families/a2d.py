"""dLLM's "Tiny-A2D" models, MDLM variant (dllm-hub/Qwen2.5-Coder-0.5B-Instruct-diffusion-mdlm-v0.1,
dllm-hub/Qwen3-0.6B-diffusion-mdlm-v0.1): an autoregressive Qwen2.5 / Qwen3 model adapted to masked
diffusion with full attention ("AR to diffusion").

On disk: `model_type: "a2d-qwen2"` / `"a2d-qwen3"`, `architectures: ["A2DQwen2LMHeadModel"]` / Qwen3,
remote code, and exactly the tensor names of transformers' Qwen2/Qwen3ForCausalLM (tied embeddings).
The BD3LM variant (a2d_bd3lm.py) has the same format: which one a folder holds is told by its name
(hub id or folder containing "bd3lm"), or by `--family mdlm|bd3lm`.

Conventions (ZHZisZZ/dllm `dllm/core/samplers/mdlm.py` MDLMSampler, replayed by tests/test_parity.py):
full attention; no logit shift; mask `<|mask|>` (Qwen3: `<|MASK|>` in some tokenizers; the tokenizer's
declared mask token is read first); the tokenizer's eos (`<|im_end|>` for the instruct models) ends
text, `<|endoftext|>` pads; blocks of `block_length` from the end of the prompt; steps counted by
dLLM's rounded linear schedule (`schedule rounded`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffucode.errors import CheckpointError
from diffucode.families import hf, masked_qwen

COMPLETE = None
CONTEXT_CAP = 8192  # prompt + hole tokens allowed (config.json's 32-40 k is the RoPE limit)
MASK_TOKENS = ("<|mask|>", "<|MASK|>")


def arch_of(config: dict) -> str:
    """qwen2 or qwen3, from model_type a2d-qwen2 / a2d-qwen3."""
    arch = str(config.get("model_type") or "").lower().removeprefix("a2d-")
    if arch not in masked_qwen.ARCHS:
        raise CheckpointError(f"model type {config.get('model_type')!r}: dLLM A2D checkpoints are a2d-qwen2 or "
                              "a2d-qwen3 (A2D over Llama is not supported)")
    return arch


def specials(tok: hf.HFTextTokenizer, config: dict) -> masked_qwen.Specials:
    """The mask the tokenizer declares (mask_token), else <|mask|> / <|MASK|>; its eos and <|endoftext|> end text."""
    declared = getattr(tok.tok, "mask_token", None)
    mask = next((t for t in (declared, *MASK_TOKENS) if t and tok.token_id(t) is not None), MASK_TOKENS[0])
    eos = getattr(tok.tok, "eos_token", None)
    return masked_qwen.special_tokens(tok, config, mask_token=mask,
                                      eos_tokens=tuple(t for t in (eos, "<|endoftext|>") if t))


def load_parts(folder: Path, config: dict, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool):
    """(model, tokenizer, specials, context) shared by both variants."""
    tok = hf.load_tokenizer(folder, trust_remote_code=trust_remote_code, fallback="Qwen2Tokenizer")
    sp = specials(tok, config)
    model = masked_qwen.load_model(folder, config, arch=arch_of(config), device=device, dtype=dtype,
                                   trust_remote_code=trust_remote_code)
    max_pos = int(config.get("max_position_embeddings") or CONTEXT_CAP)
    return model, tok, sp, min(max_pos, CONTEXT_CAP)


def load(folder: Path, config: dict, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
    """(denoiser, tokenizer, meta) for an A2D MDLM folder."""
    model, tok, sp, context = load_parts(folder, config, device=device, dtype=dtype,
                                         trust_remote_code=trust_remote_code)
    den, meta = masked_qwen.full_attention(model, tok, sp, shift=False, context=context)
    return den, tok, meta

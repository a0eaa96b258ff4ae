"""Open-dCoder (Open-dLLM: fredzzp/open-dcoder-0.5B): Qwen2.5-Coder-0.5B trained as a masked-diffusion model.

On disk it is a plain transformers Qwen2 checkpoint (`model_type: "qwen2"`, `Qwen2ForCausalLM`, tied
embeddings, no auto_map): only its tokenizer's mask token `<M>` tells it from an autoregressive
Qwen2, so a qwen2 folder without `<M>` is refused as not a diffusion model.

Conventions (Open-dLLM's `veomni/models/transformers/qwen2/generation_utils.py`, replayed by
tests/test_parity.py): full attention; logits shifted by one (the prediction for position i is the
output at i-1); `<|endoftext|>` ends text; no BOS; infill is prefix + masks + suffix with no special
tokens, the layout the authors' infilling eval uses. Their evaluation decodes with "p2" (re-masking
the least confident tokens each step, `schedule remask`); their entropy/maskgit decoding is Dream's
(`schedule linear`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffucode.families import hf, masked_qwen

COMPLETE = None  # fills holes with the masked sampler (infill.complete)
CONTEXT_CAP = 8192  # prompt + hole tokens allowed (config.json's 32,768 is the RoPE limit; full attention over
#                    more costs a laptop seconds per step)


def load(folder: Path, config: dict, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
    """(denoiser, tokenizer, meta) for an Open-dCoder folder."""
    tok = hf.load_tokenizer(folder, trust_remote_code=trust_remote_code, fallback="Qwen2Tokenizer")
    sp = masked_qwen.special_tokens(tok, {}, mask_token="<M>", eos_tokens=("<|endoftext|>",))
    model = masked_qwen.load_model(folder, config, arch="qwen2", device=device, dtype=dtype,
                                   trust_remote_code=trust_remote_code)
    context = min(int(config.get("max_position_embeddings") or CONTEXT_CAP), CONTEXT_CAP)
    den, meta = masked_qwen.full_attention(model, tok, sp, shift=True, context=context)
    return den, tok, meta

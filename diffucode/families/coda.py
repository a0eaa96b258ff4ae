"""CoDA (Salesforce/CoDA-v0-Base, -Instruct): Qwen3-1.7B trained as a masked-diffusion model.

On disk: `model_type: "CoDA"`, `architectures: ["CoDALanguageModel"]`, remote code, and the tensor
names of transformers' Qwen3ForCausalLM with a separate (untied) `lm_head.weight`: we load it with
that class, made bidirectional, so no remote code runs unless the user opts in.

Conventions (CoDA's `CoDALanguageModel/generation_utils.py`, a copy of Dream's; replayed by
tests/test_parity.py): full attention; logits shifted by one; mask `<|mask|>`; `<|im_end|>` ends a
turn and `<|endoftext|>` pads; decoding is Dream's (`schedule linear`, entropy order). The training
curriculum keys of config.json (mask_block_sizes, sampling_eps, ...) play no part at inference.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffucode.families import hf, masked_qwen

COMPLETE = None
CONTEXT_CAP = 8192  # prompt + hole tokens allowed (config.json's 40,960 is the RoPE limit; full attention over
#                    more costs a laptop seconds per step)


def load(folder: Path, config: dict, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
    """(denoiser, tokenizer, meta) for a CoDA folder."""
    tok = hf.load_tokenizer(folder, trust_remote_code=trust_remote_code, fallback="Qwen2Tokenizer")
    sp = masked_qwen.special_tokens(tok, config, mask_token="<|mask|>", eos_tokens=("<|endoftext|>", "<|im_end|>"))
    model = masked_qwen.load_model(folder, config, arch="qwen3", device=device, dtype=dtype,
                                   trust_remote_code=trust_remote_code, tie_word_embeddings=False)
    context = min(int(config.get("max_position_embeddings") or CONTEXT_CAP), CONTEXT_CAP)
    den, meta = masked_qwen.full_attention(model, tok, sp, shift=True, context=context)
    return den, tok, meta

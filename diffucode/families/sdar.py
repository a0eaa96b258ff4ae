"""SDAR (JetLM/SDAR-1.7B-Chat, -4B-Chat, -8B-Chat, ...): block diffusion over Qwen3 weights.

On disk: `model_type: "sdar"`, `architectures: ["SDARForCausalLM"]`, remote code, and the tensor names
of transformers' Qwen3ForCausalLM (untied head); `block_size` in config.json (4 for the released chat
models, which is also what we assume when the key is missing; the -b8/-b16/... checkpoints say their
own). We load it with Qwen3ForCausalLM run block-causally (families/blockwise.py), no remote code.

Conventions (JetAstra/SDAR, the evaluation decoder `block_diffusion_generate` of
evaluation/opencompass/opencompass/models/huggingface_bd3.py; replayed by tests/test_parity.py):
blocks counted from position 0, the prompt's complete blocks prefilled, a block attends to the
finished blocks and to itself (exact K/V cache); no logit shift; mask `<|MASK|>`; `<|endoftext|>`
and `<|im_end|>` end text. Decoding is diffucode.blocks.sample_blocks.

A block never sees what follows it: `complete` continues the prefix (diffucode/continuation.py);
infill and rewrite are refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffucode.continuation import complete_by_continuation
from diffucode.errors import ConfigError
from diffucode.families import blockwise, hf, masked_qwen

COMPLETE = complete_by_continuation
DEFAULT_BLOCK = 4  # the released SDAR chat models' training block size
CONTEXT_CAP = 8192
REFUSAL = ("SDAR is a block-diffusion model: each block sees only the text before it, never a suffix, so it "
           "cannot fill a hole or rewrite a span; use `diffucode complete` (it continues the text at the cursor)")


def load(folder: Path, config: dict, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
    """(denoiser, tokenizer, meta) for an SDAR folder."""
    if trust_remote_code:
        raise ConfigError("SDAR runs through diffucode's block decoder over transformers' Qwen3 classes; "
                          "--trust-remote-code does not apply to it")
    tok = hf.load_tokenizer(folder, trust_remote_code=trust_remote_code, fallback="Qwen2Tokenizer")
    sp = masked_qwen.special_tokens(tok, config, mask_token="<|MASK|>", eos_tokens=("<|endoftext|>", "<|im_end|>"))
    model = masked_qwen.load_model(folder, config, arch="qwen3", device=device, dtype=dtype, trust_remote_code=False,
                                   tie_word_embeddings=bool(config.get("tie_word_embeddings", False)))
    block = int(config.get("block_size") or DEFAULT_BLOCK)
    max_pos = int(config.get("max_position_embeddings") or CONTEXT_CAP)
    den = blockwise.BlockHFModel(model, block_length=block, align="start", schedule="even", mask_id=sp.mask_id,
                                 pad_id=None, eos_ids=sp.eos_ids,
                                 bos_id=None, vocab_size=tok.vocab_size, forbidden_ids=sp.forbidden,
                                 max_seq_len=min(max_pos, CONTEXT_CAP), refusal=REFUSAL)
    meta = {"infill": {"pad_tail": False}, "logit_shift": 0, "attention": f"block-causal, blocks of {block}",
            "block_length": block, "chat": tok.has_chat_template, "variable_length": None,
            "supports": ["complete"], "not_supported": {"infill": REFUSAL, "rewrite": REFUSAL, "instruct": REFUSAL}}
    return den, tok, meta

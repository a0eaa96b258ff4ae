"""dLLM's "Tiny-A2D" models, BD3LM variant (dllm-hub/Qwen2.5-Coder-0.5B-Instruct-diffusion-bd3lm-v0.1,
dllm-hub/Qwen3-0.6B-diffusion-bd3lm-v0.1): block diffusion over the same on-disk format as the MDLM
variant (a2d.py), run block-causally by families/blockwise.py.

Conventions (ZHZisZZ/dllm `dllm/core/samplers/bd3lm.py` BD3LMSampler, replayed by tests/test_parity.py):
blocks of 32 (the released models' training block; `block_size` in config.json when present) aligned to
the end of the prompt (the prompt is left-padded to whole blocks, pads unseen, positions from 0 at the
prompt's first token); each block attends to the finished ones and to itself; no logit shift;
`schedule rounded`; decoding stops after a block holding the end-of-text token.

A block never sees what follows it: `complete` continues the prefix (diffucode/continuation.py);
infill and rewrite are refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffucode.continuation import complete_by_continuation
from diffucode.errors import ConfigError
from diffucode.families import a2d, blockwise

COMPLETE = complete_by_continuation
DEFAULT_BLOCK = 32  # dLLM's A2D BD3LM training and evaluation block size
REFUSAL = ("this BD3LM checkpoint is a block-diffusion model: each block sees only the text before it, never a "
           "suffix, so it cannot fill a hole or rewrite a span; use `diffucode complete` (it continues the text at "
           "the cursor), or its MDLM sibling for infill")


def load(folder: Path, config: dict, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
    """(denoiser, tokenizer, meta) for an A2D BD3LM folder."""
    if trust_remote_code:
        raise ConfigError("BD3LM runs through diffucode's block decoder over transformers' Qwen classes; "
                          "--trust-remote-code does not apply to it")
    model, tok, sp, context = a2d.load_parts(folder, config, device=device, dtype=dtype, trust_remote_code=False)
    block = int(config.get("block_size") or DEFAULT_BLOCK)
    den = blockwise.BlockHFModel(model, block_length=block, align="prompt_end", schedule="rounded",
                                 mask_id=sp.mask_id, pad_id=None, eos_ids=sp.eos_ids, bos_id=None,
                                 vocab_size=tok.vocab_size, forbidden_ids=sp.forbidden, max_seq_len=context,
                                 refusal=REFUSAL)
    meta = {"infill": {"pad_tail": False}, "logit_shift": 0, "attention": f"block-causal, blocks of {block}",
            "block_length": block, "chat": tok.has_chat_template, "variable_length": None,
            "supports": ["complete"], "not_supported": {"infill": REFUSAL, "rewrite": REFUSAL, "instruct": REFUSAL}}
    return den, tok, meta

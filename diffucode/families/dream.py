"""Dream family: Dream-v0 7B, Dream-Coder 7B, DiffuCoder 7B (Base/Instruct/cpGRPO), DreamOn.

On disk: `model_type: "Dream"`, `architectures: ["DreamModel"]`, remote code (`modeling_dream.py`) and
Qwen2 weight names (`model.layers.N.self_attn.q_proj.weight`, `lm_head.weight`, ...): the network is
Qwen2/Qwen2.5 run with full attention. We load it with transformers' own `Qwen2ForCausalLM`, made
bidirectional (hf.make_bidirectional), so no remote code runs unless the user opts in.

Conventions (from the authors' `generation_utils.py`, verified by tests/test_families.py):
* logits are shifted by one: the prediction for position i is the output at i-1;
* the mask is `<|mask|>`; DiffuCoder-Instruct pads answers with `<|dlm_pad|>`; `<|endoftext|>` ends text;
* the head (152,064 rows) is wider than the tokenizer (~151,667 ids): the sampler masks the rest
  (Dream#54: a sampled id past the vocabulary crashed decode).
* DreamOn adds `<|expand|>`: a mask predicted as it becomes two masks, and an end-of-text predicted
  inside the hole deletes that position (its `<|delete|>` token where the tokenizer has one). When
  the tokenizer has `<|expand|>`, infill's length mode "auto" decodes that way (diffucode/expand.py);
  the other modes never sample it. As in DreamOn's own generator, its infilling prompt is BOS + prefix
  + hole + suffix + EOS (the tokenizer's bos and eos tokens), in every length mode.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffucode.families import hf, masked_qwen

COMPLETE = None  # the family's own `complete` (engine.Engine.complete): none, infill.complete fills the hole

# Context the authors trained with (Dream's README: 2,048); config.json says 131,072 (inherited RoPE limit).
TRAINED_CONTEXT = 2048


def qwen2_config(config: dict):
    """transformers' Qwen2Config for a Dream config.json (same fields; Dream-only keys ride along)."""
    cfg = masked_qwen.qwen_config("qwen2", config)
    cfg.is_causal = False
    return cfg


def _dreamon_frame(tok: hf.HFTextTokenizer, eos_id: int | None) -> tuple[list[int], list[int]]:
    """DreamOn's infilling prompt is [BOS] prefix <masks> suffix [EOS] (its README's process_infilling_prompt
    and eval/generator.py): the tokenizer's bos token (Dream's `<|beginoftext|>`) and end of text."""
    bos = tok.tok.bos_token_id
    if bos is None:
        bos = tok.token_id("<|beginoftext|>")
    return ([bos] if bos is not None else []), ([eos_id] if eos_id is not None else [])


def load(folder: Path, config: dict, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
    """(denoiser, tokenizer, meta) for a Dream-family folder."""
    tf = hf.transformers()
    tok = hf.load_tokenizer(folder, trust_remote_code=trust_remote_code, fallback="Qwen2Tokenizer")
    if trust_remote_code:
        model = hf.remote_load(folder, device=device, dtype=dtype)
    else:
        model = hf.hf_load(tf.Qwen2ForCausalLM, folder, config=qwen2_config(config), device=device, dtype=dtype)
        hf.make_bidirectional(model)

    mask_id = hf.special_id(tok, config, "<|mask|>", "mask_token_id", "mask token")
    eos_id = tok.token_id("<|endoftext|>")
    if eos_id is None:
        eos_id = tok.tok.eos_token_id
    pad_id = tok.token_id("<|dlm_pad|>")  # DiffuCoder-Instruct's answer filler; absent elsewhere
    tails = {i for i in (eos_id, pad_id) if i is not None}
    forbidden = (tok.control_ids | {mask_id}) - tails
    max_pos = int(config.get("max_position_embeddings") or TRAINED_CONTEXT)
    expand_id = tok.token_id("<|expand|>")  # DreamOn only
    delete_id = tok.token_id("<|delete|>")
    delete_id = (eos_id if delete_id is None else delete_id) if expand_id is not None else None
    den = hf.HFDenoiser(model, shift=True, mask_id=mask_id, pad_id=pad_id, eos_id=eos_id, vocab_size=tok.vocab_size,
                        forbidden_ids=forbidden, max_seq_len=min(max_pos, TRAINED_CONTEXT), expand_id=expand_id,
                        delete_id=delete_id,
                        infill_frame=_dreamon_frame(tok, eos_id) if expand_id is not None else ((), ()))
    meta = {
        "infill": {"pad_tail": False},
        "logit_shift": 1,
        "attention": "full",
        "chat": tok.has_chat_template,
        "variable_length": "expand/delete" if expand_id is not None else None,
    }
    return den, tok, meta

"""LLaDA family: LLaDA-8B Base/Instruct, LLaDA-1.5 (GSAI-ML), with full attention and no logit shift.

On disk: `model_type: "llada"`, `architectures: ["LLaDAModelLM"]`, remote code (`modeling_llada.py`, an
OLMo derivative) with OLMo-style names. Its "llama" block is exactly a LLaMA decoder layer, so we load
the weights into transformers' own `LlamaForCausalLM` (made bidirectional) by renaming them:

    model.transformer.wte.weight                 -> model.embed_tokens.weight
    model.transformer.blocks.N.attn_norm.weight  -> model.layers.N.input_layernorm.weight
    model.transformer.blocks.N.q_proj/k_proj/v_proj.weight -> model.layers.N.self_attn.{q,k,v}_proj.weight
    model.transformer.blocks.N.attn_out.weight   -> model.layers.N.self_attn.o_proj.weight
    model.transformer.blocks.N.ff_norm.weight    -> model.layers.N.post_attention_layernorm.weight
    model.transformer.blocks.N.ff_proj.weight    -> model.layers.N.mlp.gate_proj.weight  (SiLU applied to it)
    model.transformer.blocks.N.up_proj.weight    -> model.layers.N.mlp.up_proj.weight
    model.transformer.blocks.N.ff_out.weight     -> model.layers.N.mlp.down_proj.weight
    model.transformer.ln_f.weight                -> model.norm.weight
    model.transformer.ff_out.weight              -> lm_head.weight  (absent when weight_tying)

RoPE is the rotate-half form with inv_freq = theta^(-2i/d) in both, attention scale 1/sqrt(head_dim),
RMSNorm `w * x / rms(x)`. Only configs with exactly that structure are mapped (see `_unsupported`);
anything else (ALiBi, biases, q/k norms, block groups, scaled embeddings/logits) needs the authors'
code: `--trust-remote-code`. The mask is `<|mdm_mask|>` (id 126336 in the real tokenizer), read from
the tokenizer; `<|endoftext|>` ends text (LLaDA's SFT pads answers with it).
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffucode.errors import CheckpointError
from diffucode.families import hf

COMPLETE = None  # the family's own `complete` (engine.Engine.complete): none, infill.complete fills the hole

_B = r"^model\.transformer\.blocks\.(\d+)\."
KEY_MAPPING = {
    r"^model\.transformer\.wte\.": "model.embed_tokens.",
    r"^model\.transformer\.ln_f\.": "model.norm.",
    r"^model\.transformer\.ff_out\.": "lm_head.",
    _B + r"attn_norm\.": r"model.layers.\1.input_layernorm.",
    _B + r"q_proj\.": r"model.layers.\1.self_attn.q_proj.",
    _B + r"k_proj\.": r"model.layers.\1.self_attn.k_proj.",
    _B + r"v_proj\.": r"model.layers.\1.self_attn.v_proj.",
    _B + r"attn_out\.": r"model.layers.\1.self_attn.o_proj.",
    _B + r"ff_norm\.": r"model.layers.\1.post_attention_layernorm.",
    _B + r"ff_proj\.": r"model.layers.\1.mlp.gate_proj.",
    _B + r"up_proj\.": r"model.layers.\1.mlp.up_proj.",
    _B + r"ff_out\.": r"model.layers.\1.mlp.down_proj.",
}

# (config key, value LLaDA's llama block needs for the mapping to be exact); missing keys take OLMo defaults.
_REQUIRED = (
    ("block_type", "llama"),
    ("activation_type", "silu"),
    ("layer_norm_type", "rms"),
    ("alibi", False),
    ("rope", True),
    ("include_bias", False),
    ("include_qkv_bias", False),
    ("bias_for_layer_norm", False),
    ("attention_layer_norm", False),
    ("input_emb_norm", False),
    ("scale_logits", False),
    ("block_group_size", 1),
    ("yarn", False),
    ("multi_query_attention", False),
)


def _unsupported(config: dict) -> list[str]:
    bad = [f"{k}={config[k]!r}" for k, want in _REQUIRED if k in config and config[k] not in (want, None)]
    if config.get("layer_norm_with_affine") is False:
        bad.append("layer_norm_with_affine=False")
    if config.get("rope_scaling"):
        bad.append(f"rope_scaling={config['rope_scaling']!r}")
    return bad


def llama_config(config: dict):
    """transformers' LlamaConfig equivalent to a LLaDA config.json (CheckpointError when not exact)."""
    tf = hf.transformers()
    bad = _unsupported(config)
    if bad:
        raise CheckpointError(
            "this LLaDA variant does not map exactly onto LLaMA layers (" + ", ".join(bad) + "); "
            "pass --trust-remote-code to run the authors' modeling_llada.py"
        )
    try:
        d, heads = int(config["d_model"]), int(config["n_heads"])
        vocab = int(config.get("embedding_size") or config["vocab_size"])
        ffn = int(config.get("mlp_hidden_size") or config.get("mlp_ratio", 4) * d)
        cfg = tf.LlamaConfig(
            vocab_size=vocab, hidden_size=d, intermediate_size=ffn, num_hidden_layers=int(config["n_layers"]),
            num_attention_heads=heads, num_key_value_heads=int(config.get("n_kv_heads") or heads),
            head_dim=d // heads, max_position_embeddings=int(config.get("max_sequence_length") or 4096),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-5)), rope_theta=float(config.get("rope_theta", 10000.0)),
            tie_word_embeddings=bool(config.get("weight_tying", False)), attention_bias=False, mlp_bias=False,
            hidden_act="silu", pad_token_id=config.get("pad_token_id"), eos_token_id=config.get("eos_token_id"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"config.json is not a LLaDA config: {type(exc).__name__}: {exc}") from exc
    cfg.is_causal = False
    return cfg


def load(folder: Path, config: dict, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
    """(denoiser, tokenizer, meta) for a LLaDA folder."""
    tf = hf.transformers()
    tok = hf.load_tokenizer(folder, trust_remote_code=trust_remote_code)
    if trust_remote_code:
        model = hf.remote_load(folder, device=device, dtype=dtype)
    else:
        model = hf.hf_load(tf.LlamaForCausalLM, folder, config=llama_config(config), device=device, dtype=dtype,
                           key_mapping=KEY_MAPPING)
        hf.make_bidirectional(model)

    mask_id = hf.special_id(tok, config, "<|mdm_mask|>", "mask_token_id", "mask token")
    eos_id = tok.token_id("<|endoftext|>")
    if eos_id is None:
        eos_id = tok.tok.eos_token_id if tok.tok.eos_token_id is not None else config.get("eos_token_id")
    forbidden = (tok.control_ids | {mask_id}) - {eos_id}
    den = hf.HFDenoiser(model, shift=False, mask_id=mask_id, pad_id=None, eos_id=eos_id, vocab_size=tok.vocab_size,
                        forbidden_ids=forbidden, max_seq_len=int(config.get("max_sequence_length") or 4096))
    meta = {"infill": {"pad_tail": False}, "logit_shift": 0, "attention": "full", "chat": tok.has_chat_template,
            "weights": "remote code" if trust_remote_code else "LlamaForCausalLM (renamed LLaDA weights)"}
    return den, tok, meta

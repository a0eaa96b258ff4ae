"""What the Qwen-based masked-diffusion families share: a config.json read as transformers' own Qwen2 or
Qwen3 config, the weights loaded into Qwen2ForCausalLM / Qwen3ForCausalLM (the families keep the AR
model's tensor names), attention made bidirectional, and the checkpoint's special tokens.

No authors' code runs: each family module (open_dcoder, coda, a2d, sdar) states its conventions and
calls `load_model` and `special_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from diffucode.errors import CheckpointError
from diffucode.families import hf

_META_KEYS = ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path", "torch_dtype",
              "dtype")
ARCHS = {"qwen2": "Qwen2", "qwen3": "Qwen3"}


def qwen_config(arch: str, config: dict, **override):
    """transformers' Qwen2Config / Qwen3Config for a family's config.json (the family's own keys ride along)."""
    tf = hf.transformers()
    fields = {k: v for k, v in config.items() if k not in _META_KEYS}
    fields.pop("attn_implementation", None)  # a training choice (SDAR writes flex_attention): transformers picks ours
    if fields.get("rope_scaling") is None:
        fields.pop("rope_scaling", None)
    fields.update(override)
    try:
        return getattr(tf, f"{ARCHS[arch]}Config")(**fields)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config.json does not describe a {ARCHS[arch]}-shaped model: {exc}") from exc


def load_model(folder: Path, config: dict, *, arch: str, device: torch.device, dtype: torch.dtype,
               trust_remote_code: bool, **override):
    """The network: the authors' code when the user opts in (trust_remote_code), else transformers'
    Qwen2/Qwen3ForCausalLM with the causal flag off."""
    if trust_remote_code:
        return hf.remote_load(folder, device=device, dtype=dtype)
    tf = hf.transformers()
    cls = getattr(tf, f"{ARCHS[arch]}ForCausalLM")
    model = hf.hf_load(cls, folder, config=qwen_config(arch, config, **override), device=device, dtype=dtype)
    hf.make_bidirectional(model)
    return model


@dataclass(frozen=True)
class Specials:
    mask_id: int
    eos_ids: tuple[int, ...]  # end of text / end of turn: the first is the hole's tail id
    pad_id: int | None
    forbidden: frozenset[int]  # never sampled as content


def special_tokens(tok: hf.HFTextTokenizer, config: dict, *, mask_token: str, eos_tokens: tuple[str, ...],
                   pad_token: str | None = None) -> Specials:
    """The mask (from the tokenizer by its text, else config.json's mask_token_id; a CheckpointError
    when neither has one), the ids that end text, the pad and the ids never to sample."""
    mask_id = hf.special_id(tok, config, mask_token, "mask_token_id", "mask token (is this a diffusion checkpoint?)")
    eos = [tok.token_id(t) for t in eos_tokens]
    eos_ids = tuple(dict.fromkeys(i for i in [*eos, tok.tok.eos_token_id] if i is not None))
    pad_id = tok.token_id(pad_token) if pad_token else None
    forbidden = (tok.control_ids | {mask_id}) - set(eos_ids)
    return Specials(mask_id, eos_ids, pad_id, frozenset(forbidden))


def full_attention(model, tok: hf.HFTextTokenizer, sp: Specials, *, shift: bool, context: int):
    """(denoiser, meta) of a full-attention family: holes filled by diffucode's masked sampler."""
    den = hf.HFDenoiser(model, shift=shift, mask_id=sp.mask_id, pad_id=None, eos_id=sp.eos_ids[0],
                        vocab_size=tok.vocab_size, forbidden_ids=sp.forbidden, max_seq_len=context)
    meta = {"infill": {"pad_tail": False}, "logit_shift": int(shift), "attention": "full",
            "chat": tok.has_chat_template, "variable_length": None}
    return den, meta

"""The bidirectional transformer that predicts masked tokens. A config dataclass and an nn.Module, nothing else.

Architecture: pre-norm blocks with RMSNorm, rotary position embeddings, SwiGLU MLPs, and full
(non-causal) attention through `scaled_dot_product_attention`: every position sees every other, which
is what a masked-diffusion denoiser needs (LLaDA, Dream). There is no time embedding: like MDLM and
LLaDA, the number of masks in the input tells the model how far along the reverse process it is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 16384
    d_model: int = 512
    n_layers: int = 8
    n_heads: int = 8
    ffn_hidden: int = 0  # 0: SwiGLU default, 8/3 * d_model rounded up to a multiple of 64
    max_seq_len: int = 1024
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("head dimension must be even for rotary embeddings")

    @property
    def hidden(self) -> int:
        return self.ffn_hidden or 64 * math.ceil(self.d_model * 8 / 3 / 64)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict):
            raise ValueError(f"expected an object of model settings, not {type(d).__name__}")
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        for f in fields(cls):
            if f.name in d:
                _check_field(f.name, d[f.name], f.default)
        return cls(**d)


def _check_field(name: str, value, default) -> None:
    """A model setting of the type of its default; sizes positive (ffn_hidden may be 0: the default)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= (0 if name == "ffn_hidden" else 1)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if not ok:
        expected = "true or false" if isinstance(default, bool) else "a positive number"
        raise ValueError(f"{name} must be {expected}, not {value!r}")


# Architecture presets; vocab_size is set from the tokenizer when a model is built.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(d_model=64, n_layers=2, n_heads=4, max_seq_len=512),  # tests
    "mini": ModelConfig(d_model=256, n_layers=6, n_heads=4, max_seq_len=1024),  # ~9 M with a 16 k vocab
    "small": ModelConfig(d_model=512, n_layers=8, n_heads=8, max_seq_len=1024),  # ~34 M with a 16 k vocab
    "base": ModelConfig(d_model=768, n_layers=12, n_heads=12, max_seq_len=1024),  # ~110 M
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(seq_len: int, head_dim: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, head_dim/2), float32."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    ang = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, Dh); rotate pairs (first half, second half) of the head dimension."""
    x1, x2 = x.float().chunk(2, dim=-1)
    if cos.dim() == 2:
        cos, sin = cos[None, None], sin[None, None]  # (1, 1, T, Dh/2); per-row tables come as (B, 1, T, Dh/2)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, attn_mask=None, kv=None, where=None):
        """x: (B, T, D) -> (B, T, D) output and the (K, V) attended over, each (B, H, S, Dh).

        With `kv` = cached (K, V) of the whole sequence and `where` (B, T) indices into it, x holds only
        the rows at `where`: their fresh keys and values replace those rows in a copy of the cache (the
        cache itself is never written, so a cached step is a pure function: compilable, graph-capturable)
        and the queries attend over that partly stale copy. A cache of one row is shared by all B rows."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3×(B,H,T,Dh)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv is not None:
            K, V = kv
            if K.size(0) != B:  # a one-row prefill's cache serves every row (scoring.py)
                K, V = K.expand(B, -1, -1, -1), V.expand(B, -1, -1, -1)
            idx = where[:, None, :, None].expand(-1, K.size(1), -1, K.size(3))  # (B, H, T, Dh)
            k, v = K.scatter(2, idx, k), V.scatter(2, idx, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=False)  # full attention
        return self.out(y.transpose(1, 2).reshape(B, T, D)), (k, v)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.hidden, bias=False)
        self.down = nn.Linear(cfg.hidden, cfg.d_model, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, attn_mask=None, kv=None, where=None):
        """(B, T, D) -> (B, T, D) and the layer's (K, V) (see Attention.forward)."""
        a, kv = self.attn(self.attn_norm(x), cos, sin, attn_mask, kv, where)
        x = x + a
        return x + self.mlp(self.mlp_norm(x)), kv


class DiffusionTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        cos, sin = rope_tables(cfg.max_seq_len, cfg.d_model // cfg.n_heads, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, 0.02), residual output projections scaled by 1/sqrt(2 * n_layers)."""
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.ones_(p)
            elif name.endswith(("attn.out.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for `ids`.

        Args:
            ids: (B, T) token ids, masked positions hold the mask id.
            positions: optional (B, P) or (P,) indices; logits are computed only there (the output
                projection over all T positions is most of the work at inference and is not needed).
            key_padding_mask: optional (B, T) bool, True for real tokens; padded keys are not attended to.
        Returns:
            (B, T, V) logits, or (B, P, V) when `positions` is given.
        """
        return self.lm_head(_gather_rows(self.hidden(ids, key_padding_mask), positions))

    def hidden(self, ids: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, D) final normed hidden states (forward without the output projection;
        training applies the projection only where the loss is taken)."""
        T = ids.size(1)
        self._check_length(T)
        x = self.embed(ids)  # (B, T, D)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        attn_mask = _attn_mask(key_padding_mask)
        for block in self.blocks:
            x, _ = block(x, cos, sin, attn_mask)
        return self.norm(x)

    def _check_length(self, T: int) -> None:
        if T > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds the model's context of {self.cfg.max_seq_len}")

    # -- approximate K/V caching for denoising (Fast-dLLM-style; see denoiser.CachedDenoiser) --------
    def prefill(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """A full forward that also returns every layer's keys and values, each (B, H, T, Dh), for
        `forward_cached`. Logits at `positions` (B, P) or everywhere, and `key_padding_mask`, as in `forward`."""
        T = ids.size(1)
        self._check_length(T)
        x = self.embed(ids)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        attn_mask = _attn_mask(key_padding_mask)
        cache = []
        for block in self.blocks:
            x, (k, v) = block(x, cos, sin, attn_mask)
            cache.append((k, v.contiguous()))  # v is a view of the fused qkv output: copied once here, not per step
        return self.lm_head(self.norm(_gather_rows(x, positions))), cache

    def forward_cached(
        self,
        ids: torch.Tensor,
        cache: list[tuple[torch.Tensor, torch.Tensor]],
        active: torch.Tensor,
        positions: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """A forward over only the `active` (B, A) positions, the others read from `cache` (from `prefill`).

        The active positions are recomputed through every layer; every other position contributes the
        keys and values cached at the last prefill (stale where the text it attended to has changed
        since: an approximation, refreshed by calling `prefill` again). Returns logits (B, A, V), or at
        `positions` (B, P) — indices into `active` by rank. Pure: `cache` is not modified.
        `key_padding_mask` (B, T), True for real tokens, as in `forward`.
        """
        B = ids.size(0)
        self._check_length(ids.size(1))
        if active.dim() == 1:
            active = active.expand(B, -1)
        x = self.embed(ids.gather(1, active))  # (B, A, D)
        cos, sin = self.rope_cos[active][:, None], self.rope_sin[active][:, None]  # (B, 1, A, Dh/2)
        attn_mask = _attn_mask(key_padding_mask)
        for block, kv in zip(self.blocks, cache):
            x, _ = block(x, cos, sin, attn_mask, kv=kv, where=active)
        return self.lm_head(self.norm(_gather_rows(x, positions)))


def _attn_mask(key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) bool, True for real tokens -> (B, 1, 1, T), the shape SDPA broadcasts over heads and queries."""
    return None if key_padding_mask is None else key_padding_mask[:, None, None, :]


def _gather_rows(x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """(B, T, D) -> (B, P, D) at `positions` (B, P) or (P,); all rows when None."""
    if positions is None:
        return x
    if positions.dim() == 1:
        positions = positions.expand(x.size(0), -1)
    return x.gather(1, positions[..., None].expand(-1, -1, x.size(-1)))

"""Classifier-free guidance without a trained null prompt: LLaDA's `cfg_scale` (its generate.py).

A masked-diffusion model's unconditional input is the same sequence with the prompt masked: every
step runs the model on both (one call over twice the rows) and uses

    logits = un + (cfg_scale + 1) · (cond − un)

so 0 is the plain model and larger values follow the prompt harder. LLaDA's "prompt" is every position
that is not a mask when generation starts (`prompt_index = x != mask_id`); the caller passes it, and
the generated positions — masks or tokens committed since — are the same in both inputs.
"""

from __future__ import annotations


import torch

from diffucode.denoiser import Denoiser


def unconditional(ids: torch.Tensor, prompt: torch.Tensor, mask_id: int) -> torch.Tensor:
    """`ids` with the `prompt` positions (bool, broadcast to ids' shape) replaced by the mask."""
    return ids.masked_fill(prompt, mask_id)


def guided_logits(denoiser: Denoiser, ids: torch.Tensor, positions: torch.Tensor | None, *,
                  prompt: torch.Tensor | None, cfg_scale: float) -> torch.Tensor:
    """The denoiser's logits for (B, T) `ids` at (B, P) `positions`, guided when `cfg_scale` > 0.

    `cfg_scale` 0 is exactly `denoiser.logits(ids, positions)`. Otherwise one call over the B rows and
    their unconditional copies (2B rows, so a K/V-cached denoiser caches both), combined in float32."""
    if not cfg_scale:
        return denoiser.logits(ids, positions)
    both_ids = torch.cat([ids, unconditional(ids, prompt, denoiser.mask_id)])
    rows = None if positions is None else positions.expand(ids.size(0), -1)
    both_pos = None if rows is None else torch.cat([rows, rows])
    cond, un = denoiser.logits(both_ids, both_pos).float().chunk(2)
    return un + (cfg_scale + 1) * (cond - un)

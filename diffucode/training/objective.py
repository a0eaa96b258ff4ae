"""What one training step computes: the model's trunk over the whole batch, then the output head and the
cross-entropy only at the positions where the loss is taken (masking.py's weights > 0, ~half the
tokens). Running the vocabulary projection only there saves ~20 % of the FLOPs of a small model.

On a GPU the trunk (static shapes) and the head (dynamic in the number of predicted positions) are
compiled separately (`LossNet`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffucode.model import DiffusionTransformer


def hidden_states(model: DiffusionTransformer, ids: torch.Tensor) -> torch.Tensor:
    """(B, T) ids -> (B, T, D) final normed hidden states (a plain function so torch.compile can wrap it;
    tests/test_training.py checks that lm_head(hidden_states) equals model(ids))."""
    return model.hidden(ids)


def head_loss(weight: torch.Tensor, h: torch.Tensor, sel: torch.Tensor, targets: torch.Tensor, w: torch.Tensor):
    """Cross-entropy only at the N selected positions. h (B, T, D); sel, targets, w (N,).
    Returns (Σ w·CE, CE (N,))."""
    hs = h.flatten(0, 1).index_select(0, sel)  # (N, D)
    logits = F.linear(hs, weight).float()  # (N, V)
    ce = F.cross_entropy(logits, targets, reduction="none")  # (N,)
    return (ce * w).sum(), ce


class LossNet(nn.Module):
    """Wraps the model so that DDP sees one forward; the trunk and the head are compiled separately
    (the trunk has static shapes, the head is dynamic in N)."""

    def __init__(self, model: DiffusionTransformer, compile: bool):
        super().__init__()
        self.model = model
        self.trunk = torch.compile(hidden_states) if compile else hidden_states
        self.head = torch.compile(head_loss, dynamic=True) if compile else head_loss

    def forward(self, ids, sel, targets, w):
        h = self.trunk(self.model, ids)
        return self.head(self.model.lm_head.weight, h, sel, targets, w)

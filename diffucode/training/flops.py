"""How much work a training step does and how much the device could do: the FLOPs behind the logged
MFU (model FLOPs utilisation) and each GPU's dense bf16 peak.
"""

from __future__ import annotations

import torch

from diffucode.model import ModelConfig

# Dense bf16 peak FLOP/s by device name (first match wins); --peak-tflops overrides.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0), ("A100", 312.0),
               ("L40S", 362.0), ("A10G", 125.0), ("L4", 121.0), ("4090", 165.0))


def train_flops(mc: ModelConfig, n_params: int, *, seq_len: int, tokens: float, head_positions: float) -> float:
    """FLOPs of one training step (forward + backward) over `tokens` input tokens in rows of `seq_len`,
    of which `head_positions` go through the output head.

    The usual MFU count is 6·N per token plus attention, with N all parameters; here the output head
    (the vocab × d_model projection, tied to the embedding) runs only where the loss is taken (about
    half of the tokens), and the embedding lookup is no matmul, so counting 6·N for every token would
    overstate MFU. Counted instead:
      * 6 · (non-embedding parameters) per token: the transformer blocks' matmuls;
      * 12 · n_layers · d_model · seq_len per token: attention scores and values (PaLM, Chowdhery et
        al. 2022, appendix B: 2 matmuls of 2·T·d per layer, × 3 for forward + backward; bidirectional
        attention, so no causal halving);
      * 6 · vocab · d_model per head position: the output projection.
    """
    embed = mc.vocab_size * mc.d_model
    trunk = n_params - embed * (1 if mc.tie_embeddings else 2)
    attention = 12.0 * mc.n_layers * mc.d_model * seq_len
    return (6.0 * trunk + attention) * tokens + 6.0 * embed * head_positions


def peak_flops(device: torch.device, override: float) -> float | None:
    if override > 0:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tf in PEAK_TFLOPS:
        if key in name:
            return tf * 1e12
    return None

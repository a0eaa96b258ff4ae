"""Device names: "auto" resolved, and a device that torch does not know or this machine lacks refused
with one line (ConfigError) before any weights are read."""

from __future__ import annotations

import torch

from diffucode.errors import ConfigError


def _mps() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`None`/"auto": cuda if present, then mps, else cpu. A named device must exist here."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: no CUDA GPU here (or torch {torch.__version__} was built "
                              "without CUDA); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type == "mps" and not _mps():
        raise ConfigError(f"device {device!r}: MPS is not available here; use --device cpu")
    return dev

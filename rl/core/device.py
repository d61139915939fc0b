"""The torch device a config asks for, with a clear error when it is not there."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "Config key device is 'cuda' but no CUDA device is visible to torch "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Use device: auto "
            "or cpu, or run in the CUDA image with --nv."
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)

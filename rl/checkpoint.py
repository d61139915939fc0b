"""Checkpoints and weight files: written atomically, read with weights_only=True."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch

from rl.files import write_bytes

log = logging.getLogger("rl")


def save(path: str | Path, payload: dict) -> Path:
    # Serialise in memory, then write the bytes: torch's own file writer turns a full disk
    # into an opaque RuntimeError, a plain write raises OSError(ENOSPC) that names it.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes(path, buffer.getbuffer())


def _first_sentence(exc: Exception) -> str:
    """torch's unpickling errors run to pages; the first sentence names the cause."""
    text = " ".join(str(exc).split())
    return text.split(". ")[0].rstrip(".")[:200]


def load(path: str | Path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Missing {what}: '{path}' does not exist. Run the rule that makes it "
            f"(snakemake --cores N '{path}') or pass the right path."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"Cannot load {what} '{path}': {type(exc).__name__}: {_first_sentence(exc)}. The "
            f"file is corrupt, truncated or not a plain weights file (only tensors and plain "
            f"containers are accepted). Delete it and rerun the rule that makes it."
        ) from None


def save_checkpoint(path, state, actor, critic, optim, sched) -> None:
    save(
        path,
        {
            "state": state,
            "actor": actor.state_dict(),
            "critic": critic.state_dict(),
            "optim": optim.state_dict(),
            "sched": sched.state_dict(),
            "torch_rng": torch.get_rng_state(),
        },
    )
    log.info("checkpoint at frame %d -> %s", state["frames"], path)


def load_checkpoint(path, actor, critic, optim, sched, settings: str) -> dict | None:
    """Restore a checkpoint into the given objects; returns its loop state, or None.

    `settings` is the hash of the config sections the run depends on: a checkpoint
    written under other settings is refused rather than silently mixed in.
    """
    path = Path(path)
    if not path.exists():
        return None
    ckpt = load(path, "training checkpoint")
    found = ckpt.get("state", {}).get("settings")
    if found != settings:
        raise ValueError(
            f"The checkpoint '{path}' was written by a run with other settings (hash {found}, "
            f"this config: {settings}): resuming would mix two configurations. Restore the "
            f"config it was made with, or delete the checkpoint to start this seed over."
        )
    actor.load_state_dict(ckpt["actor"])
    critic.load_state_dict(ckpt["critic"])
    optim.load_state_dict(ckpt["optim"])
    sched.load_state_dict(ckpt["sched"])
    torch.set_rng_state(ckpt["torch_rng"])
    return ckpt["state"]

"""Checkpoints and weight files: written atomically, read with weights_only=True.

How a training loop resumes: `Checkpoint` keeps, in one file, the loop's own state (a dict
of plain values: counters, metric rows, the settings hash), the `state_dict()` of each named
object (modules, optimiser, schedule), torch's global RNG state and any other generator the
loop draws from. Both studies' loops save one at their boundaries and restore it at start;
a checkpoint written under other settings is refused rather than mixed in.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from rl.core.files import require, write_bytes

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
    path = require(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"Cannot load {what} '{path}': {type(exc).__name__}: {_first_sentence(exc)}. The "
            f"file is corrupt, truncated or not a plain weights file (only tensors and plain "
            f"containers are accepted). Delete it and rerun the rule that makes it."
        ) from None


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient; the message names the last good checkpoint and the fix."""


class Checkpoint:
    """The resumable state of one training run, at `path`.

    `settings` is the hash of what the run's numbers depend on; `what` names the run in
    messages ("PPO", "pendulum"). Objects are saved by `state_dict()` under their names,
    generators (torch.Generator-like: get_state/set_state) under theirs.
    """

    def __init__(self, path: str | Path, settings: str, what: str):
        self.path, self.settings, self.what = Path(path), settings, what

    def save(
        self, at: str, state: dict, objects: Mapping[str, Any], generators: Mapping[str, Any] = {}
    ) -> None:
        """Write the checkpoint; `at` says where the run is ("frame 4096") for the log."""
        payload = {"state": state, **{k: v.state_dict() for k, v in objects.items()}}
        payload["torch_rng"] = torch.get_rng_state()
        payload.update({k: g.get_state() for k, g in generators.items()})
        save(self.path, payload)
        log.info("checkpoint at %s -> %s", at, self.path)

    def restore(
        self, objects: Mapping[str, Any], generators: Mapping[str, Any] = {}
    ) -> dict | None:
        """Load the checkpoint into `objects` and `generators`; returns the loop state, or
        None when there is no checkpoint (a fresh run)."""
        if not self.path.exists():
            return None
        ckpt = load(self.path, f"{self.what} training checkpoint")
        found = ckpt.get("state", {}).get("settings")
        if found != self.settings:
            raise ValueError(
                f"The checkpoint '{self.path}' was written by a run with other {self.what} "
                f"settings (hash {found}, this config: {self.settings}): resuming would mix two "
                f"configurations. Restore the config it was made with, or delete the checkpoint "
                f"to start this seed over."
            )
        for name, obj in objects.items():
            obj.load_state_dict(ckpt[name])
        torch.set_rng_state(ckpt["torch_rng"])
        for name, gen in generators.items():
            gen.set_state(ckpt[name])
        return ckpt["state"]

    @contextmanager
    def on_interrupt(self, position: Callable[[], str]) -> Iterator[None]:
        """Ctrl-C (or SIGINT) inside: say where the run stopped and what resumes it, then
        let the interrupt through. No checkpoint is written there: it may land mid-update,
        with weights that match no counter; the last one written stays valid."""
        try:
            yield
        except KeyboardInterrupt:
            log.warning(
                "interrupted at %s; rerun to resume from the last checkpoint (%s)",
                position(),
                self.path if self.path.exists() else "none yet",
            )
            raise

"""Copies of a policy's weights taken while it trains, at fixed simulator-step budgets.

A comparison of two training methods scores each method's policy at the same budgets; the
training loops take the copies (`Snapshots.take`) and a separate job scores them, so
neither loop knows how the other is evaluated. A snapshot records the axes a comparison
plots against: simulator steps (environment transitions consumed: a PPO frame, or one step
of one rollout of a BPTT batch, so a batch of B rollouts of H steps costs B x H), gradient
steps (optimiser steps) and training seconds (wall-clock time in the training loop,
evaluations and checkpoints excluded).

The list of snapshots lives in the loop's state, so it is checkpointed and resumed with it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rl.core.checkpoint import load, save

# The methods a snapshot file is written by: the PPO study, and the pendulum study's
# back-propagation through time.
PPO, BPTT = "ppo", "bptt"
FILE = "snapshots.pt"


def every(cfg: dict) -> int | None:
    """Simulator steps between snapshots: compare.snapshot_every in a comparison study,
    else None (no snapshots)."""
    return cfg["compare"]["snapshot_every"] if "compare" in cfg else None


class Snapshots:
    """Takes a copy every `every` simulator steps (None: never), into `rows` (a list kept
    in the loop state)."""

    def __init__(self, every: int | None, rows: list):
        self.every, self.rows = every, rows

    def due(self, sim_steps: int) -> bool:
        """A snapshot belongs at `sim_steps` (a multiple of `every`, 0 included) and is not
        taken yet."""
        if self.every is None or sim_steps % self.every:
            return False
        return not self.rows or self.rows[-1]["sim_steps"] < sim_steps

    def take(self, module: torch.nn.Module, sim_steps: int, grad_steps: int, wall_s: float):
        weights = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        self.rows.append(
            {
                "sim_steps": int(sim_steps),
                "grad_steps": int(grad_steps),
                "wall_s": float(wall_s),
                "weights": weights,
            }
        )


def write(path: str | Path, method: str, rows: list, **extra) -> Path:
    """The snapshots of one training run as a weights file: {method, snapshots, **extra}."""
    return save(path, {"method": method, "snapshots": list(rows), **extra})


def read(path: str | Path) -> dict:
    """A snapshots file written by `write`, or an error naming the rules that make one."""
    found = load(path, "policy snapshots")
    if found.get("method") not in (PPO, BPTT) or not found.get("snapshots"):
        raise ValueError(
            f"'{path}' holds no policy snapshots (method {found.get('method')!r}, "
            f"{len(found.get('snapshots') or [])} snapshots). The train_ppo and "
            f"train_pendulum rules of a study with a `compare:` section write them; rerun "
            f"the one of this variant."
        )
    return found

"""What "resumed equals uninterrupted" means for a PPO run: the same metrics table (timing
columns aside) and the same final weights, bit for bit. Shared by the resume tests (killed
runs) and the cluster test (a pre-empted SLURM job)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from rl.ppo.train import TIMING_COLUMNS


def training_result(seed_dir: Path) -> tuple[pd.DataFrame, dict]:
    """One seed's PPO metrics table without its timing columns, and its policy weights."""
    table = pd.read_csv(seed_dir / "ppo" / "train_metrics.csv")
    weights = torch.load(seed_dir / "ppo" / "policy.pt", weights_only=True)
    return table.drop(columns=list(TIMING_COLUMNS)), weights


def assert_same_training(a: tuple[pd.DataFrame, dict], b: tuple[pd.DataFrame, dict]) -> None:
    pd.testing.assert_frame_equal(a[0], b[0])
    for part in ("actor", "critic"):
        assert a[1][part].keys() == b[1][part].keys(), f"{part}: other parameters"
        for key, value in a[1][part].items():
            assert torch.equal(value, b[1][part][key]), f"{part}.{key} differs"

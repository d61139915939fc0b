"""What "resumed equals uninterrupted" means for a PPO run: the same metrics table (timing
columns aside) and the same final weights, bit for bit. Shared by the resume tests (killed
runs) and the cluster test (a pre-empted SLURM job)."""

from __future__ import annotations

import json
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


def assert_one_training_run(study_dir: Path, batches: int, seed: int = 0) -> None:
    """A resumed train_ppo logged to one MLflow run, each batch's metrics once."""
    from mlflow.tracking import MlflowClient

    marker = json.loads((study_dir / "mlflow" / "initialised.json").read_text())
    client = MlflowClient(marker["tracking_uri"])
    runs = client.search_runs(
        [marker["experiment_id"]],
        filter_string=f"tags.`rl.stage` = 'train_ppo' AND tags.`rl.seed` = '{seed}'",
    )
    assert len(runs) == 1, [r.info.run_id for r in runs]
    history = client.get_metric_history(runs[0].info.run_id, "train_reward_mean")
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)) == batches, sorted(steps)

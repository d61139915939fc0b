"""PPO trained in-process in tests: the validated ci config and its observation statistics
(fixtures), and what "the same run" means: the metric and evaluation tables without their
timing columns, and the actor's and critic's weights, bit for bit."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from rl.core import config
from rl.ppo.envs import observation_stats
from rl.ppo.train import TIMING_COLUMNS


@pytest.fixture
def cfg(ci_config):
    return config.validate(ci_config)


@pytest.fixture
def stats(cfg):
    return observation_stats(cfg["env"], 100, seed=0)


def table(result: dict, key: str = "metrics") -> pd.DataFrame:
    """A run's rows under `key` ("metrics" or "eval") without the timing columns."""
    return pd.DataFrame(result["state"][key]).drop(columns=list(TIMING_COLUMNS), errors="ignore")


def assert_same_run(a: dict, b: dict) -> None:
    pd.testing.assert_frame_equal(table(a, "metrics"), table(b, "metrics"))
    pd.testing.assert_frame_equal(table(a, "eval"), table(b, "eval"))
    for part in ("actor", "critic"):
        for k, v in a[part].state_dict().items():
            assert torch.equal(v, b[part].state_dict()[k]), f"{part}.{k}"

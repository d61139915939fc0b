"""The differentiable pendulum's controller trained for real: the tutorial's recipe lifts the
final-step reward, and the compiled rollout gives the eager numbers."""

import pandas as pd
import pytest
import torch

from rl.core import config
from rl.pendulum.train import train


@pytest.fixture
def cfg(ci_config):
    torch.set_num_threads(1)
    return config.validate(ci_config)


def test_training_learns_to_swing_up(cfg, tmp_path):
    """A short run of the tutorial's recipe already lifts the final-step reward."""
    cfg["pendulum"].update(iterations=150, batch_size=32, horizon=100, num_cells=64)
    table = pd.DataFrame(train(cfg, 0, tmp_path)["state"]["rows"])
    start = table["final_step_reward"].head(10).mean()
    end = table["final_step_reward"].tail(10).mean()
    assert end > start + 1.0, (start, end)


def test_compiled_rollout_gives_the_eager_numbers(cfg):
    """`pendulum.compile` changes the speed, not the rollout: rewards and gradients agree
    with the eager path to float32 rounding (the first call compiles, about a minute)."""
    from rl.pendulum.env import make_params
    from rl.pendulum.train import make_policy, make_rollout

    torch.manual_seed(0)
    net = make_policy(cfg["pendulum"])
    params = dict(make_params(batch_size=[8])["params"].items())
    th, thdot = torch.linspace(-3, 3, 8), torch.linspace(-1, 1, 8)
    results = []
    for compile in (False, True):
        net.zero_grad()
        reward = make_rollout(net, 3, compile)(th, thdot, params)
        reward.mean().backward()
        results.append((reward.detach(), [p.grad.clone() for p in net.parameters()]))
    (r_eager, g_eager), (r_compiled, g_compiled) = results
    torch.testing.assert_close(r_compiled, r_eager, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_compiled, g_eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

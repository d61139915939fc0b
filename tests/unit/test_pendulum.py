import math

import pandas as pd
import pytest
import torch

from rl.core import config
from rl.pendulum.train import TIMING_COLUMNS, evaluate_controller, load_policy, train

COLUMNS = [
    "iteration",
    "frames",
    "return",
    "final_step_reward",
    "grad_norm",
    "lr",
    "iters_per_s",
    "wall_s",
]


@pytest.fixture
def cfg(ci_config):
    torch.set_num_threads(1)
    return config.validate(ci_config)


def _table(result) -> pd.DataFrame:
    return pd.DataFrame(result["state"]["rows"]).drop(columns=list(TIMING_COLUMNS))


def test_training_table_has_one_row_per_iteration(cfg, tmp_path):
    p = cfg["pendulum"]
    rows = []
    result = train(cfg, 0, tmp_path, on_iteration=rows.append)
    table = pd.DataFrame(result["state"]["rows"])
    assert list(table.columns) == COLUMNS
    assert len(table) == p["iterations"] and rows == result["state"]["rows"]
    assert table["iteration"].tolist() == list(range(1, p["iterations"] + 1))
    assert table["frames"].tolist() == [
        i * p["batch_size"] * p["horizon"] for i in range(1, p["iterations"] + 1)
    ]
    assert table.notna().all().all() and (table["iters_per_s"] > 0).all()
    assert (table["return"] < 0).all() and (table["final_step_reward"] <= 0).all()
    # returns are sums over the horizon of rewards in [-(pi^2 + 0.1 * 8^2 + 0.001 * 2^2), 0]
    assert (table["return"] >= -p["horizon"] * (math.pi**2 + 6.4 + 0.004)).all()
    # cosine schedule over the run, logged before each step
    expected = [
        p["lr"] * (1 + math.cos(math.pi * i / p["iterations"])) / 2 for i in range(p["iterations"])
    ]
    assert table["lr"].tolist() == pytest.approx(expected)


def test_same_seed_same_numbers(cfg, tmp_path):
    a = train(cfg, 0, tmp_path / "a")
    b = train(cfg, 0, tmp_path / "b")
    pd.testing.assert_frame_equal(_table(a), _table(b))
    for k, v in a["policy"].state_dict().items():
        assert torch.equal(v, b["policy"].state_dict()[k])
    c = train(cfg, 1, tmp_path / "c")
    assert not _table(a).equals(_table(c))


def test_resume_reproduces_the_uninterrupted_run(cfg, tmp_path, caplog):
    first = train(cfg, 0, tmp_path)
    assert first["checkpoint"].exists()  # written at iteration 6 of 12
    caplog.set_level("INFO", logger="rl")
    again = train(cfg, 0, tmp_path)
    assert "resuming from checkpoint" in caplog.text and "iteration 6" in caplog.text
    pd.testing.assert_frame_equal(_table(again), _table(first))
    for k, v in first["policy"].state_dict().items():
        assert torch.equal(v, again["policy"].state_dict()[k])


def test_checkpoint_of_other_settings_is_refused(cfg, tmp_path):
    train(cfg, 0, tmp_path)
    cfg["pendulum"]["lr"] = 0.01
    with pytest.raises(ValueError, match="other pendulum settings"):
        train(cfg, 0, tmp_path)


def test_controller_evaluation_from_the_fixed_starts(cfg, tmp_path):
    result = train(cfg, 0, tmp_path)
    evals = evaluate_controller(cfg, result["policy"])
    p = cfg["pendulum"]
    n_starts, n_steps = len(p["eval_starts"]), p["eval_steps"]
    assert len(evals) == n_starts * n_steps
    first = evals[evals["step"] == 0].sort_values("start")
    angles = [a for a, _ in p["eval_starts"]]
    assert first["start_angle"].tolist() == pytest.approx(angles)
    assert first["angle"].tolist() == pytest.approx(angles)
    assert first["speed"].tolist() == pytest.approx([s for _, s in p["eval_starts"]])
    assert evals["time_s"].max() == pytest.approx((n_steps - 1) * p["physics"]["dt"])
    assert evals["angle"].abs().max() <= math.pi
    assert evals["torque"].abs().max() <= p["physics"]["max_torque"]
    # the same controller from the same starts: the same trajectories
    pd.testing.assert_frame_equal(evals, evaluate_controller(cfg, result["policy"]))


def test_saved_policy_loads_into_the_configured_network(cfg, tmp_path):
    from rl.core.checkpoint import save

    result = train(cfg, 0, tmp_path)
    save(tmp_path / "policy.pt", {"policy": result["policy"].state_dict()})
    net = load_policy(cfg, tmp_path / "policy.pt")
    for k, v in result["policy"].state_dict().items():
        assert torch.equal(v, net.state_dict()[k])
    cfg["pendulum"]["num_cells"] = 8
    with pytest.raises(ValueError, match="does not fit"):
        load_policy(cfg, tmp_path / "policy.pt")

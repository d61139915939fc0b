"""The comparison study's parts without a workflow: its config checks, the policy snapshots
of both training loops, the one evaluator, the gradient probe and the statistics."""

import copy

import gymnasium
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from rl.analysis.aggregation import Bootstrap
from rl.compare import statistics as stats
from rl.compare.evaluate import bptt_policy, episode_seeds, play, ppo_policy
from rl.compare.gradients import probe
from rl.core import config, snapshots
from rl.pendulum.env import batched_rollout, make_params
from rl.pendulum.train import make_policy
from rl.pendulum.train import train as train_bptt
from rl.ppo.envs import observation_stats
from rl.ppo.models import deterministic_policy
from rl.ppo.train import train as train_ppo

from support import REPO


@pytest.fixture
def raw() -> dict:
    with open(REPO / "configs" / "ci-compare.yaml") as f:
        return yaml.safe_load(f)


@pytest.fixture
def cfg(raw) -> dict:
    torch.set_num_threads(1)
    return config.validate(raw)


def test_shipped_comparison_configs_are_valid():
    for name in ("ci-compare", "pendulum-compare"):
        cfg = config.load(REPO / "configs" / f"{name}.yaml")
        assert cfg["study"] == name and cfg["env"]["id"] == "Pendulum-v1"
        studies = [v["studies"] for v in cfg["variants"]]
        assert ["ppo"] in studies and ["pendulum"] in studies
    full = config.load(REPO / "configs" / "pendulum-compare.yaml")
    assert len(full["seeds"]) >= 10
    assert {10_000, 50_000, 200_000} <= set(full["compare"]["budgets"])


def _edit(raw, dotted, value):
    out = copy.deepcopy(raw)
    *path, last = dotted.split(".")
    node = out
    for key in path:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[last] = value
    return out


@pytest.mark.parametrize(
    "dotted, value, named",
    [
        ("variants.0.studies", ["ppo", "pendulum"], "variants[ppo].studies"),
        ("env.id", "InvertedDoublePendulum-v5", "env.id"),
        ("env.max_episode_steps", 1000, "env.max_episode_steps"),
        ("pendulum.physics.g", 9.81, "pendulum.physics.g"),
        ("compare.snapshot_every", 1000, "compare.snapshot_every"),
        ("compare.budgets", [4096], "compare.budgets"),
        ("compare.budgets", [768], "compare.budgets"),
        ("compare.pair", ["ppo", "sac"], "compare.pair"),
        ("compare.episodes", 0, "compare.episodes"),
        ("compare.stride", 3, "compare.stride"),
    ],
)
def test_a_bad_comparison_is_refused_naming_the_key(raw, dotted, value, named):
    if dotted == "env.id":  # the comparison needs Pendulum-v1; IDP needs its videos off too
        raw = _edit(raw, "env.max_episode_steps", 200)
    with pytest.raises(config.ConfigError) as info:
        config.validate(_edit(raw, dotted, value))
    assert f"'{named}'" in str(info.value)


def test_a_comparison_needs_two_variants_and_videos_need_mujoco(raw):
    lone = {k: v for k, v in raw.items() if k != "variants"}
    with pytest.raises(config.ConfigError, match="'compare'"):
        config.validate(lone)
    with pytest.raises(config.ConfigError, match="'video.enabled'.*not a MuJoCo task"):
        config.validate(_edit(raw, "video.enabled", True))


def test_the_comparison_keys_decide_the_results_but_not_the_statistics(raw, tmp_path):
    cfg = config.validate(raw)
    old = tmp_path / "config.yaml"
    old.write_text(config.dump(cfg))
    config.check_same_study(config.validate(_edit(raw, "compare.thresholds", [-300])), old)
    with pytest.raises(config.ConfigError, match="compare.episodes"):
        config.check_same_study(config.validate(_edit(raw, "compare.episodes", 4)), old)


def test_snapshots_sit_on_the_grid_and_change_no_number(cfg, tmp_path):
    every = cfg["compare"]["snapshot_every"]
    stats_ = observation_stats(cfg["env"], 100, seed=0)
    plain = train_ppo(cfg, 0, stats_, tmp_path / "a")
    snapped = train_ppo(cfg, 0, stats_, tmp_path / "b", snapshot_every=every)
    drop = ["frames_per_s", "wall_s"]
    a = pd.DataFrame(plain["state"]["metrics"]).drop(columns=drop)
    pd.testing.assert_frame_equal(a, pd.DataFrame(snapped["state"]["metrics"]).drop(columns=drop))
    rows = snapped["state"]["snapshots"]
    total = cfg["ppo"]["total_frames"]
    assert [r["sim_steps"] for r in rows] == list(range(0, total + 1, every))
    per_batch = cfg["ppo"]["num_epochs"] * (
        cfg["ppo"]["frames_per_batch"] // cfg["ppo"]["minibatch_size"]
    )
    assert rows[-1]["grad_steps"] == total // cfg["ppo"]["frames_per_batch"] * per_batch
    last = {k: v for k, v in snapped["actor"].state_dict().items()}
    for k, v in rows[-1]["weights"].items():
        torch.testing.assert_close(v, last[k], rtol=0, atol=0)

    p = cfg["pendulum"]
    plain = train_bptt(cfg, 0, tmp_path / "c")
    snapped = train_bptt(cfg, 0, tmp_path / "d", snapshot_every=every)
    assert [r["return"] for r in plain["state"]["rows"]] == [
        r["return"] for r in snapped["state"]["rows"]
    ]
    steps = [r["sim_steps"] for r in snapped["state"]["snapshots"]]
    assert steps == list(range(0, p["iterations"] * p["batch_size"] * p["horizon"] + 1, every))
    assert [r["grad_steps"] for r in snapped["state"]["snapshots"]] == [
        s // (p["batch_size"] * p["horizon"]) for s in steps
    ]
    path = snapshots.write(tmp_path / "s.pt", snapshots.BPTT, snapped["state"]["snapshots"])
    assert snapshots.read(path)["method"] == snapshots.BPTT
    (tmp_path / "bad.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="bad.pt"):
        snapshots.read(tmp_path / "bad.pt")


def test_the_referee_is_gymnasium_and_our_pendulum_agrees_with_it(cfg):
    """The BPTT controller scored on gymnasium's episodes gets the return our differentiable
    pendulum gives from the same starts: the one evaluator judges the task it trained on."""
    torch.manual_seed(0)
    net = make_policy(cfg["pendulum"]).eval()
    seeds = episode_seeds(cfg, 1)
    scored = play(net, "Pendulum-v1", seeds, 200)
    assert scored["length"].tolist() == [200] * len(seeds)
    starts = []
    for s in seeds:
        task = gymnasium.make("Pendulum-v1").unwrapped
        task.reset(seed=s)
        starts.append(task.state.copy())
    th, thdot = torch.tensor(np.array(starts), dtype=torch.float32).T
    params = dict(make_params(batch_size=[len(seeds)])["params"].items())
    with torch.no_grad():
        ours = batched_rollout(net, th, thdot, params, 200)["reward"].sum(0)
    np.testing.assert_allclose(ours.numpy(), scored["return"], rtol=1e-3)


def test_episodes_are_the_same_for_both_methods_and_other_for_other_seeds(cfg):
    assert episode_seeds(cfg, 0) == episode_seeds(cfg, 0)
    assert not set(episode_seeds(cfg, 0)) & set(episode_seeds(cfg, 1))
    a = play(lambda obs: torch.zeros(len(obs), 1), "Pendulum-v1", episode_seeds(cfg, 0), 200)
    b = play(lambda obs: torch.zeros(len(obs), 1), "Pendulum-v1", episode_seeds(cfg, 0), 200)
    pd.testing.assert_frame_equal(a, b)
    assert a["return"].nunique() == len(a)  # different starts
    full = play(lambda obs: torch.full((len(obs), 1), 5.0), "Pendulum-v1", [0, 1], 200)
    assert full["clamped_fraction"].tolist() == [1.0, 1.0]
    assert a["clamped_fraction"].tolist() == [0.0] * len(a)


def test_a_ppo_snapshot_is_the_exported_policy(cfg):
    from rl.ppo.envs import make_training_env
    from rl.ppo.models import make_actor_critic

    stats_ = observation_stats(cfg["env"], 100, seed=0)
    env = make_training_env(cfg["env"], 0, obs_stats=stats_)
    torch.manual_seed(3)
    actor, _ = make_actor_critic(cfg["ppo"], 3, env.action_spec, "cpu")
    obs = torch.randn(7, 3)
    expected = deterministic_policy(actor, stats_)(obs)
    torch.testing.assert_close(ppo_policy(cfg, actor.state_dict(), stats_)(obs), expected)
    assert bptt_policy(cfg, make_policy(cfg["pendulum"]).state_dict())(obs).shape == (7, 1)


def test_the_gradient_probe_measures_each_budget_and_horizon(cfg):
    torch.manual_seed(0)
    net = make_policy(cfg["pendulum"])
    snaps = [
        {"sim_steps": s, "grad_steps": s // 128, "wall_s": 0.1 * s, "weights": net.state_dict()}
        for s in (0, 512, 1024, 2048)
    ]
    found = {"method": snapshots.BPTT, "snapshots": snaps}
    table = probe(cfg, found, 0)
    c = cfg["compare"]
    assert sorted(set(table["sim_steps"])) == sorted(set(c["budgets"]))  # 2048 is also the last
    assert table["horizon"].tolist() == c["probe_horizons"] * 2
    assert np.isfinite(table[["grad_norm", "grad_cosine", "clamped_fraction"]]).all().all()
    assert (table["grad_cosine"] <= 1 + 1e-6).all()
    pd.testing.assert_frame_equal(table, probe(cfg, found, 0))


def _scores() -> pd.DataFrame:
    """Two methods x 3 seeds on a snapshot grid: `a` learns fast in steps, slowly in time."""
    rows = []
    for method, seconds_per_step in (("a", 1e-2), ("b", 1e-4)):
        for seed in range(3):
            for steps in (0, 100, 200, 300):
                score = -1000 + (3 if method == "a" else 2) * steps + 10 * seed
                wall = steps * seconds_per_step
                rows.append([method, method, seed, steps, steps // 10, wall, score, 0.0])
    columns = [*stats.KEYS, *stats.AXES, "score", "clamped_fraction"]
    return pd.DataFrame(rows, columns=columns)


def test_curves_on_every_axis_and_the_wall_clock_grid():
    boot = Bootstrap(200, 0.95, 0)
    curves = stats.curves(_scores(), boot, wall_points=4)
    steps = curves[(curves["variant"] == "a") & (curves["axis"] == "sim_steps")]
    assert steps["x"].tolist() == [0, 100, 200, 300]
    assert steps["iqm"].tolist() == pytest.approx([-990, -690, -390, -90])
    wall = curves[(curves["variant"] == "b") & (curves["axis"] == "wall_s")]
    assert wall["x"].tolist() == pytest.approx([0, 1, 2, 3])  # up to the slowest run's end
    assert wall["mean"].tolist() == pytest.approx([-990, -390, -390, -390])  # b is done by 0.03 s
    run = pd.DataFrame({"wall_s": [0.0, 1.0, 2.0], "score": [1.0, 2.0, 3.0]})
    assert stats.on_wall_grid(run, np.array([0.0, 0.5, 1.0, 5.0])).tolist() == [1, 1, 2, 3]


def test_improvement_thresholds_and_who_gets_there_first():
    boot = Bootstrap(200, 0.95, 0)
    scores = _scores()
    poi = stats.improvement(scores, ["a", "b"], [100, 200], boot)
    assert poi["quantity"].tolist() == ["return_at_100", "return_at_200", "final_return"]
    assert poi["probability_of_improvement"].tolist() == [1.0, 1.0, 1.0]
    cross = stats.crossings(scores, [-400, -50])
    a0 = cross[(cross["variant"] == "a") & (cross["seed"] == 0)].set_index("threshold")
    assert a0.loc[-400.0, "sim_steps"] == 200 and a0.loc[-50.0, "reached"] is np.False_
    first = stats.first_to(cross, ["a", "b"], boot).set_index("quantity")
    assert first.loc["first_sim_steps_to_-400", "probability_of_improvement"] == 1.0
    assert first.loc["first_wall_s_to_-400", "probability_of_improvement"] == 0.0
    # nobody reaches -50: all tie as last
    assert first.loc["first_sim_steps_to_-50", "probability_of_improvement"] == 0.5
    summary = stats.crossing_summary(cross, boot).set_index(["variant", "quantity"])
    assert summary.loc[("a", "reached_-400"), "mean"] == 1.0
    assert summary.loc[("a", "sim_steps_to_-400"), "iqm"] == 200
    assert ("a", "sim_steps_to_-50") not in summary.index  # no seed reached it

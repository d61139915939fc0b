import pandas as pd
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from rl.core import config
from rl.core.device import resolve_device
from rl.ppo.envs import (
    TrainingCopies,
    make_env,
    make_eval_env,
    make_training_env,
    observation_stats,
)
from rl.ppo.evaluate import evaluate_episode
from rl.ppo.models import make_actor_critic
from rl.ppo.train import build, train

from support.training import table


def test_observation_stats_are_finite_and_seeded(cfg, stats):
    assert len(stats["loc"]) == 9 and stats["count"] == 100
    assert all(s > 0 for s in stats["scale"])
    assert observation_stats(cfg["env"], 100, seed=0) == stats
    assert observation_stats(cfg["env"], 100, seed=1)["loc"] != stats["loc"]


@pytest.mark.parametrize("num_envs", [1, 3])
def test_training_env_passes_torchrl_spec_checks(cfg, stats, num_envs):
    env, norm = make_env(cfg["env"], 0, num_envs=num_envs, obs_stats=stats, reward_scale=0.1)
    check_env_specs(env)
    assert torch.allclose(norm.loc.double(), torch.tensor(stats["loc"], dtype=torch.float64))
    env.close()


@pytest.mark.parametrize("num_envs", [1, 3])
def test_training_copies_step_the_same_task_as_the_evaluation_pipeline(cfg, stats, num_envs):
    """TrainingCopies (the fast training env) and make_env (GymWrapper + transforms) give
    the same observations, rewards, flags and step counts from the same seed and actions,
    up to each copy's first episode end (the two draw the next start differently: gymnasium's
    same-step autoreset there, TorchRL's reset mask here); after it, the copy starts again."""
    cfg["env"]["num_envs"] = num_envs
    fast = make_training_env(cfg["env"], 5, obs_stats=stats, reward_scale=0.1)
    check_env_specs(fast)
    fast.set_seed(5)  # the spec check stepped it
    wrapped, _ = make_env(cfg["env"], 5, num_envs=num_envs, obs_stats=stats, reward_scale=0.1)
    actions = torch.rand(200, num_envs, 1, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def rollout(env):
        step = iter(range(200))
        policy = lambda td: td.set("action", actions[next(step)])  # noqa: E731
        return env.rollout(200, policy, break_when_any_done=False)

    a, b = rollout(fast), rollout(wrapped)
    keys = ["observation", "step_count"]
    keys += [("next", k) for k in ("observation", "reward", "done", "terminated", "truncated")]
    for copy in range(num_envs):
        done = a["next", "done"][copy].squeeze(-1)
        end = int(done.nonzero()[0]) + 1  # every copy falls within 200 random steps
        for key in keys:
            torch.testing.assert_close(
                a[key][copy, :end], b[key][copy, :end], rtol=0, atol=0, msg=f"{key} differs"
            )
        assert int(a["step_count"][copy, end]) == 0, "the copy was reset after its episode"
    fast.close()
    wrapped.close()


@pytest.mark.parametrize("max_steps", [1000, 5])  # episodes that fall; time-limited ones
def test_evaluation_env_runs_make_envs_episodes(cfg, stats, max_steps):
    """make_eval_env (a TrainingCopies with same-step autoreset) gives make_env's episodes,
    one after another from one seed, to the last bit of the return."""
    cfg["env"]["max_episode_steps"] = max_steps
    reference, _ = make_env(cfg["env"], 3, num_envs=1, obs_stats=stats)
    torch.manual_seed(0)
    actor, _ = make_actor_critic(cfg["ppo"], 9, reference.action_spec, "cpu")
    fast = make_eval_env(cfg["env"], 3, obs_stats=stats)
    episodes = [evaluate_episode(reference, actor, max_steps) for _ in range(4)]
    assert [evaluate_episode(fast, actor, max_steps) for _ in range(4)] == episodes
    assert len(set(episodes)) == 4  # the starts differ from episode to episode
    reference.close()
    fast.close()


@pytest.mark.parametrize("env_id", ["InvertedDoublePendulum-v5", "Pendulum-v1"])
def test_training_copies_continue_from_a_saved_state(env_id):
    """save_state / load_state: copies built and seeded otherwise, given another's state,
    step on exactly as it does, through terminations, truncations and fresh starts."""
    limits = [50, 70, 1000]

    def run(env, steps: int) -> list:
        torch.manual_seed(1)
        td, out = env.current(), []
        for _ in range(steps):
            td = td.set("action", torch.rand(3, env.action_spec.shape[-1]) * 2 - 1)
            step, td = env.step_and_maybe_reset(td)
            out.append(step["next"].clone())
        return out

    a = TrainingCopies(env_id, limits)
    a.set_seed(3)
    run(a, 40)
    saved = a.save_state()
    expected = run(a, 100)
    b = TrainingCopies(env_id, limits)
    b.set_seed(99)
    b.load_state(saved)
    got = run(b, 100)
    assert any(s["done"].any() for s in expected), "the steps cross episode ends"
    for t, (x, y) in enumerate(zip(expected, got, strict=True)):
        assert (x == y).all(), f"step {t}"
    with pytest.raises(ValueError, match="another env.num_envs"):
        TrainingCopies(env_id, limits[:2]).load_state(saved)


def test_unknown_env_id_is_a_clear_error(cfg):
    # checked once, by the config's validation, before any env is built
    cfg["env"]["id"] = "InvertedTriplePendulum-v5"
    with pytest.raises(config.ConfigError, match="env.id"):
        config.validate(cfg)


def test_cuda_requested_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the error path cannot happen")  # never on CI machines
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_same_seed_same_numbers(cfg, stats, tmp_path):
    torch.set_num_threads(1)
    a = train(cfg, 0, stats, tmp_path / "a")
    b = train(cfg, 0, stats, tmp_path / "b")
    pd.testing.assert_frame_equal(table(a, "metrics"), table(b, "metrics"))
    pd.testing.assert_frame_equal(table(a, "eval"), table(b, "eval"))
    for k, v in a["actor"].state_dict().items():
        assert torch.equal(v, b["actor"].state_dict()[k])
    c = train(cfg, 1, stats, tmp_path / "c")
    assert not table(a, "metrics").equals(table(c, "metrics"))


def test_collector_workers_must_share_the_copies_evenly(ci_config):
    ci_config["ppo"]["collector_workers"] = 3  # env.num_envs is 2
    with pytest.raises(config.ConfigError, match=r"ppo.collector_workers.*num_envs=2"):
        config.validate(ci_config)


def test_checkpoint_from_other_settings_is_refused(cfg, stats, tmp_path):
    train(cfg, 0, stats, tmp_path)
    cfg["ppo"]["lr"] = 0.001
    with pytest.raises(ValueError, match="other PPO settings"):
        train(cfg, 0, stats, tmp_path)


def test_divergence_stops_with_a_diagnosis_and_keeps_the_checkpoint(cfg, stats, tmp_path):
    from rl.core.checkpoint import TrainingDiverged

    cfg["ppo"]["total_frames"] = 4096
    cfg["ppo"]["lr"] = 1e30  # the first update blows the weights up
    with pytest.raises(TrainingDiverged, match="diverged at frame 0") as err:
        train(cfg, 0, stats, tmp_path)
    assert "No checkpoint was written yet" in str(err.value)
    assert "lower ppo.lr" in str(err.value)


def test_training_episodes_are_truncated_not_terminated(cfg, stats):
    """ppo.train_episode_steps cuts training episodes as a time limit (truncated, so GAE
    bootstraps the value there), per env copy, while the evaluation keeps
    env.max_episode_steps."""

    def time_limited(env):
        rollout = env.rollout(12, env.rand_action, break_when_any_done=False)
        steps = rollout["next", "step_count"].squeeze(-1)
        cut = rollout["next", "truncated"].squeeze(-1) & ~rollout["next", "terminated"].squeeze(-1)
        return steps, cut

    cfg["env"]["num_envs"] = 4
    cfg["ppo"]["train_episode_steps"] = [5]
    env, _, _ = build(cfg, 0, stats, torch.device("cpu"))
    steps, cut = time_limited(env)
    env.close()
    assert int(steps.max()) == 5
    assert bool(cut.any()) and bool((steps[cut] == 5).all()), "cut at 5 steps, not terminated"
    cfg["ppo"]["train_episode_steps"] = [3, 1000]  # copies 0 and 2 at 3 steps, 1 and 3 at 1000
    env, _, _ = build(cfg, 0, stats, torch.device("cpu"))
    steps, cut = time_limited(env)
    env.close()
    assert bool(cut[0::2].any()) and bool((steps[0::2][cut[0::2]] == 3).all())
    assert not bool(cut[1::2].any()) and int(steps[1::2].max()) > 3
    full, _ = make_env(cfg["env"], 0, num_envs=4, obs_stats=stats)
    _, cut = time_limited(full)
    full.close()
    assert not bool(cut.any()), "evaluation-length episodes are not cut at 5 steps"


def test_training_reset_noise_widens_the_starts_only_in_training(cfg, stats):
    """ppo.train_reset_noise_scale reaches the training copies' MuJoCo resets; the evaluation
    env keeps the task's own start distribution."""

    def start_spread(env):
        starts = torch.stack([env.reset()["observation"] for _ in range(20)])
        return float(starts.std(dim=(0, 1)).mean())

    cfg["env"]["num_envs"] = 8
    own, _, _ = build(cfg, 0, None, torch.device("cpu"))
    cfg["ppo"]["train_reset_noise_scale"] = 0.4
    wide, _, _ = build(cfg, 0, None, torch.device("cpu"))
    assert start_spread(wide) > 2.5 * start_spread(own)
    assert wide._copies[0]._reset_noise_scale == 0.4
    evaluation, _ = make_env(cfg["env"], 0, num_envs=1)
    assert evaluation.base_env._env.envs[0].unwrapped._reset_noise_scale == 0.1
    for env in (own, wide, evaluation):
        env.close()


def test_reset_noise_on_a_task_without_it_is_a_clear_error(cfg):
    cfg["env"]["id"] = "CartPole-v1"
    with pytest.raises(ValueError, match="ppo.train_reset_noise_scale"):
        make_training_env(cfg["env"], 0, reset_noise_scale=0.2)


def test_pendulum_v1_is_a_ppo_task_with_the_same_episodes_in_both_envs(cfg):
    """Pendulum-v1 (float32 observations, torque in [-2, 2], never terminated): the training
    copies and make_env's pipeline give the same bits, the time limit truncates, and the
    evaluation env runs make_env's episodes."""
    cfg["env"] |= {"id": "Pendulum-v1", "max_episode_steps": 50}
    stats = observation_stats(cfg["env"], 200, seed=0)
    assert len(stats["loc"]) == 3
    fast = make_training_env(cfg["env"], 5, obs_stats=stats, reward_scale=0.1)
    check_env_specs(fast)
    fast.set_seed(5)
    assert fast.action_spec.space.high.flatten().tolist() == [2.0] * cfg["env"]["num_envs"]
    wrapped, _ = make_env(cfg["env"], 5, obs_stats=stats, reward_scale=0.1)
    actions = torch.rand(50, cfg["env"]["num_envs"], 1, generator=torch.Generator().manual_seed(0))
    actions = actions * 4 - 2

    def rollout(env):
        step = iter(range(50))
        policy = lambda td: td.set("action", actions[next(step)])  # noqa: E731
        return env.rollout(50, policy, break_when_any_done=False)

    a, b = rollout(fast), rollout(wrapped)
    for key in ["observation", ("next", "observation"), ("next", "reward"), ("next", "done")]:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{key} differs")
    assert a["next", "truncated"][:, -1].all() and not a["next", "terminated"].any()
    reference, _ = make_env(cfg["env"], 3, num_envs=1, obs_stats=stats)
    torch.manual_seed(0)
    actor, _ = make_actor_critic(cfg["ppo"], 3, reference.action_spec, "cpu")
    evaluation = make_eval_env(cfg["env"], 3, obs_stats=stats)
    episodes = [evaluate_episode(reference, actor, 50) for _ in range(3)]
    assert [evaluate_episode(evaluation, actor, 50) for _ in range(3)] == episodes
    assert {length for _, length in episodes} == {50}
    for env in (fast, wrapped, reference, evaluation):
        env.close()

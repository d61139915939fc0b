import gymnasium
import numpy as np
import pytest
import torch
from torch import nn
from torchrl.envs.utils import check_env_specs

from rl.pendulum.env import (
    DEFAULT_PHYSICS,
    OBSERVATION_KEYS,
    PendulumEnv,
    batched_rollout,
    dynamics,
    make_env,
    make_params,
    observation,
)

# Our environment computes in float32, gymnasium in float64: states, observations and
# rewards agree to float32 rounding. Stated tolerance: |ours - gym| <= 1e-5 + 1e-5 * |gym|.
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _random_cases(n: int, seed: int = 0) -> np.ndarray:
    """Angles over several turns, speeds up to and at the limit, torques in and out of range."""
    rng = np.random.default_rng(seed)
    th = rng.uniform(-3 * np.pi, 3 * np.pi, n)
    thdot = rng.uniform(-8.0, 8.0, n)
    thdot[: n // 10] = rng.choice([-8.0, 8.0], n // 10)
    u = rng.uniform(-3.0, 3.0, n)
    return np.stack([th, thdot, u], axis=1).astype(np.float32)


def test_one_step_equals_gymnasium_pendulum_v1():
    cases = _random_cases(500)
    gym_env = gymnasium.make("Pendulum-v1").unwrapped
    gym_env.reset(seed=0)
    expected = []
    for th, thdot, u in cases:
        gym_env.state = np.array([th, thdot], dtype=np.float64)
        obs, reward, terminated, truncated, _ = gym_env.step(np.array([u], dtype=np.float32))
        assert not terminated and not truncated
        expected.append([*gym_env.state, *obs, reward])
    expected = torch.tensor(np.array(expected), dtype=torch.float64)

    env = make_env(seed=0)
    td = make_params(batch_size=[len(cases)])
    td["th"], td["thdot"] = torch.from_numpy(cases[:, 0]), torch.from_numpy(cases[:, 1])
    td = env.reset(td)
    td["action"] = torch.from_numpy(cases[:, 2:])
    nxt = env.step(td)["next"]
    ours = torch.cat([nxt["th"], nxt["thdot"], nxt["observation"], nxt["reward"]], dim=-1).double()
    torch.testing.assert_close(ours, expected, **TOL)
    assert list(OBSERVATION_KEYS) == ["cos", "sin", "thdot"]  # gymnasium's order


def test_defaults_are_gymnasium_constants():
    gym_env = gymnasium.make("Pendulum-v1").unwrapped
    assert DEFAULT_PHYSICS == {
        "g": gym_env.g,
        "m": gym_env.m,
        "l": gym_env.l,
        "dt": gym_env.dt,
        "max_torque": gym_env.max_torque,
        "max_speed": gym_env.max_speed,
    }


@pytest.mark.parametrize("batch_size", [(), (1,), (4,), (2, 3)])
def test_transformed_env_passes_torchrl_spec_checks(batch_size):
    env = make_env(batch_size=batch_size, seed=0)
    check_env_specs(env)
    assert env.observation_spec["observation"].shape == (*batch_size, 3)
    assert env.action_spec.shape == (*batch_size, 1)
    assert torch.all(env.action_spec.space.high == DEFAULT_PHYSICS["max_torque"])
    for key in ("sin", "cos"):
        spec = env.observation_spec[key]
        assert torch.all(spec.space.low == -1) and torch.all(spec.space.high == 1)


def test_base_env_passes_spec_checks():
    check_env_specs(PendulumEnv(seed=0))


def test_batch_unlocked_any_batch_size_at_reset():
    env = make_env(seed=0)  # built with batch size []
    assert env.batch_size == torch.Size([])
    for shape in ([7], [3, 2], [1]):
        td = env.reset(make_params(batch_size=shape))
        assert td.shape == torch.Size(shape)
        assert td["observation"].shape == (*shape, 3)
        rollout = env.rollout(4, auto_reset=False, tensordict=td)
        assert rollout.shape == (*shape, 4)
        assert rollout["next", "reward"].shape == (*shape, 4, 1)


def test_parameters_change_per_batch_element():
    td = make_params(batch_size=[4])
    td["params", "g"] = torch.tensor([10.0, 0.0, 20.0, 10.0])
    td["params", "l"] = torch.tensor([1.0, 1.0, 1.0, 2.0])
    th, thdot, u = torch.full((4,), 1.0), torch.zeros(4), torch.zeros(4)
    env = PendulumEnv(seed=0)
    nxt = env.step(env.reset(td.update({"th": th, "thdot": thdot, "action": u[:, None]})))
    new_thdot = nxt["next", "thdot"]
    # thdot' = 3 g / (2 l) sin(th) dt with no torque and no speed
    expected = 3 * td["params", "g"] / (2 * td["params", "l"]) * torch.sin(th) * 0.05
    torch.testing.assert_close(new_thdot, expected)
    assert new_thdot[1] == 0 and new_thdot[2] == pytest.approx(2 * new_thdot[0].item())
    # each element equals a single pendulum with that element's parameters
    for i in range(4):
        one = {k: v[i] for k, v in td["params"].items()}
        _, single, _ = dynamics(th[i], thdot[i], u[i], one)
        assert single == new_thdot[i]


def test_seeding_is_reproducible_and_owned_by_the_env():
    global_state = torch.get_rng_state()
    a, b, c = PendulumEnv(seed=3), PendulumEnv(seed=3), PendulumEnv(seed=4)
    params = make_params(batch_size=[16])
    ra, rb, rc = a.reset(params.clone()), b.reset(params.clone()), c.reset(params.clone())
    assert torch.equal(ra["th"], rb["th"]) and torch.equal(ra["thdot"], rb["thdot"])
    assert not torch.equal(ra["th"], rc["th"])
    assert not torch.equal(a.reset(params.clone())["th"], ra["th"])  # the generator advances
    a.set_seed(3)
    assert torch.equal(a.reset(params.clone())["th"], ra["th"])
    assert torch.equal(torch.get_rng_state(), global_state)  # no global RNG side effect


def test_reset_draws_within_bounds_and_from_initial_state():
    env = PendulumEnv(seed=0, init_angle=1.0, init_speed=0.5)
    td = env.reset(make_params(batch_size=[1000]))
    assert td["th"].abs().max() <= 1.0 and td["thdot"].abs().max() <= 0.5
    assert td["th"].std() > 0.5  # spread over the interval
    env.set_seed(0)
    th, thdot = env.initial_state((1000,))
    assert torch.equal(th, td["th"]) and torch.equal(thdot, td["thdot"])


def test_reset_to_given_state():
    env = make_env(seed=0)
    td = make_params(batch_size=[2])
    td["th"], td["thdot"] = torch.tensor([0.5, -2.0]), torch.tensor([1.0, 0.0])
    out = env.reset(td)
    torch.testing.assert_close(out["th"].squeeze(-1), torch.tensor([0.5, -2.0]))
    torch.testing.assert_close(
        out["observation"], observation(torch.tensor([0.5, -2.0]), torch.tensor([1.0, 0.0]))
    )


def _policy(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))


def test_gradient_flows_through_every_step_of_a_rollout():
    from tensordict.nn import TensorDictModule

    net = _policy()
    env = make_env(seed=0)
    td = make_params(batch_size=[5])
    th0 = torch.linspace(-3.0, 3.0, 5).requires_grad_()
    td["th"], td["thdot"] = th0, torch.zeros(5)
    policy = TensorDictModule(net, ["observation"], ["action"])
    rollout = env.rollout(6, policy, tensordict=env.reset(td), auto_reset=False)
    rewards = rollout["next", "reward"].squeeze(-1)  # (batch, time)
    # the last reward depends on the start through all six simulated steps and actions
    (grad,) = torch.autograd.grad(rewards[:, -1].sum(), th0, retain_graph=True)
    assert torch.isfinite(grad).all() and grad.abs().min() > 0
    rewards.mean().backward()
    for p in net.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_dynamics_gradients_match_finite_differences():
    params = {k: torch.tensor(v, dtype=torch.float64) for k, v in DEFAULT_PHYSICS.items()}
    th = torch.tensor([0.3, -2.0, 2.9], dtype=torch.float64, requires_grad=True)
    thdot = torch.tensor([0.5, -1.0, 3.0], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([0.2, -1.5, 1.0], dtype=torch.float64, requires_grad=True)  # unclamped
    assert torch.autograd.gradcheck(lambda *x: dynamics(*x, params), (th, thdot, u))


def test_batched_rollout_is_the_environment_rollout():
    """The training path (no tensordict per step) gives the TorchRL rollout's numbers and
    gradients: one step function, two ways of driving it."""
    from tensordict.nn import TensorDictModule

    steps, batch = 8, 6
    net = _policy()
    env = make_env(seed=1)
    td = env.reset(make_params(batch_size=[batch]))
    th0, thdot0 = td["th"].squeeze(-1), td["thdot"].squeeze(-1)
    ref = env.rollout(
        steps, TensorDictModule(net, ["observation"], ["action"]), tensordict=td, auto_reset=False
    )
    ref["next", "reward"].mean().backward()
    ref_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()

    params = dict(make_params(batch_size=[batch])["params"].items())
    ours = batched_rollout(net, th0, thdot0, params, steps)
    ours["reward"].mean().backward()
    torch.testing.assert_close(ours["th"].T, ref["th"].squeeze(-1))
    torch.testing.assert_close(ours["thdot"].T, ref["thdot"].squeeze(-1))
    torch.testing.assert_close(ours["action"].T, ref["action"].squeeze(-1))
    torch.testing.assert_close(ours["reward"].T, ref["next", "reward"].squeeze(-1))
    for p, g in zip(net.parameters(), ref_grads, strict=True):
        torch.testing.assert_close(p.grad, g)

"""Differentiable control of the pendulum (the TorchRL pendulum tutorial's recipe).

Each iteration rolls a batch of pendulums out from random starts for `horizon` steps with
the policy in the loop, takes minus the mean reward as the loss and back-propagates it
through every simulator step to the policy weights (back-propagation through time), then
clips the gradient norm and steps Adam on a cosine schedule. The rollouts step the
environment's own batched step (`rl.pendulum.env.batched_rollout` over `dynamics`, the
code `check_env_specs` and the physics tests check), optionally under `torch.compile`.

The loop state lives in one dict saved with the weights, optimiser, schedule and both
random generators at iteration boundaries, so a resumed run reproduces an uninterrupted
one exactly.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tensordict.nn import TensorDictModule
from torch import nn

from rl.core.checkpoint import Checkpoint, TrainingDiverged, load
from rl.core.config import config_hash
from rl.core.device import resolve_device
from rl.core.nets import ACTIVATIONS
from rl.core.progress import Progress
from rl.core.snapshots import Snapshots
from rl.pendulum.env import angle_normalize, batched_rollout, make_env, make_params

log = logging.getLogger("rl")

TIMING_COLUMNS = ("iters_per_s", "wall_s")
COMPILE_OPTIONS = {"cpp_wrapper": True, "cpp_wrapper_build_separate": True}


def make_policy(pcfg: dict, obs_dim: int = 3) -> nn.Sequential:
    """The tutorial's deterministic policy: an MLP from the observation to the torque."""
    layers: list[nn.Module] = []
    width = obs_dim
    for _ in range(pcfg["depth"]):
        layers += [nn.Linear(width, pcfg["num_cells"]), ACTIVATIONS[pcfg["activation"]]()]
        width = pcfg["num_cells"]
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def training_settings(cfg: dict) -> dict:
    """What a run's numbers depend on (a checkpoint must match it)."""
    pcfg = cfg["pendulum"]
    return {k: v for k, v in pcfg.items() if not k.startswith(("checkpoint_", "eval_"))}


def make_env_for(pcfg: dict, seed: int, device: torch.device):
    return make_env(
        pcfg["physics"],
        init_angle=pcfg["init_angle"],
        init_speed=pcfg["init_speed"],
        seed=seed,
        device=device,
    )


def make_rollout(
    net: nn.Module, horizon: int, compile: bool
) -> Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]:
    """`(th, thdot, params) -> rewards (horizon, batch)`: the training rollout.

    With `compile`, the whole horizon (forward and backward) becomes one graph: the first
    call compiles it, a one-off delay (cached on disk for later processes; see
    docs/benchmarks.md), then each iteration runs without per-step Python or autograd
    overhead. The graph's launcher is C++ (`cpp_wrapper`): an iteration launches many small
    kernels and matrix products, and a Python launcher's per-kernel overhead would rival
    the arithmetic itself. Its kernels are built apart from the launcher, which is compiled
    at -O1: at -O3, g++ takes impractically long to build a long horizon's launcher.
    """

    def rollout(th, thdot, params):
        return batched_rollout(net, th, thdot, params, horizon)["reward"]

    if not compile:
        return rollout
    return torch.compile(rollout, fullgraph=True, dynamic=False, options=COMPILE_OPTIONS)


def _iteration(net, rollout, optim, sched, pendulum, params, pcfg: dict) -> tuple:
    """One BPTT step: roll a batch out from fresh starts, back-propagate minus the mean
    reward through every simulator step, clip, step Adam and the schedule. Returns
    (return, final-step reward, gradient norm, lr) as Python numbers (one sync)."""
    th, thdot = pendulum.initial_state((pcfg["batch_size"],))
    reward = rollout(th, thdot, params)
    loss = -reward.mean()
    optim.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), pcfg["max_grad_norm"])
    optim.step()
    lr = optim.param_groups[0]["lr"]
    sched.step()
    with torch.no_grad():
        ret, last, gn = torch.stack([reward.sum(0).mean(), reward[-1].mean(), grad_norm]).tolist()
    return ret, last, gn, lr


def _row(state: dict, pcfg: dict, values: tuple, dt: float, ckpt: Checkpoint) -> dict:
    """Commit one iteration to the loop state; a non-finite return or gradient stops the run."""
    ret, last, gn, lr = values
    if not math.isfinite(ret) or not math.isfinite(gn):
        raise TrainingDiverged(
            f"Training diverged at iteration {state['iteration'] + 1}: return {ret}, "
            f"gradient norm {gn}. Lower pendulum.lr or pendulum.max_grad_norm; the last "
            f"checkpoint ({ckpt.path}) is kept, rerun to resume."
        )
    state["iteration"] += 1
    state["wall_s"] += dt
    row = {
        "iteration": state["iteration"],
        "frames": state["iteration"] * pcfg["batch_size"] * pcfg["horizon"],
        "return": ret,
        "final_step_reward": last,
        "grad_norm": gn,
        "lr": lr,
        "iters_per_s": 1.0 / dt,
        "wall_s": state["wall_s"],
    }
    state["rows"].append(row)
    return row


@dataclass
class _Run:
    """One seed's training: what the loop steps, and its resumable state."""

    net: nn.Module
    optim: torch.optim.Optimizer
    sched: object
    pendulum: object
    ckpt: Checkpoint
    state: dict

    @property
    def saved(self) -> dict:
        return {"policy": self.net, "optim": self.optim, "sched": self.sched}

    @property
    def generators(self) -> dict:
        return {"env_rng": self.pendulum.rng}

    def checkpoint(self) -> None:
        self.ckpt.save(
            f"iteration {self.state['iteration']}", self.state, self.saved, self.generators
        )


def _setup(cfg: dict, seed: int, out_dir: str | Path, device: torch.device) -> _Run:
    """Build the run (seeded) and restore its checkpoint when there is one."""
    pcfg = cfg["pendulum"]
    torch.manual_seed(seed)
    env = make_env_for(pcfg, seed, device)
    net = make_policy(pcfg, env.observation_spec["observation"].shape[-1]).to(device)
    # fused: one kernel for all parameters instead of a dozen small ops per tensor
    optim = torch.optim.Adam(net.parameters(), lr=pcfg["lr"], fused=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        optim, T_max=pcfg["lr_schedule_steps"] or pcfg["iterations"]
    )
    settings = config_hash(training_settings(cfg))
    ckpt = Checkpoint(Path(out_dir) / "checkpoint.pt", settings, "pendulum")
    run = _Run(net, optim, sched, env.base_env, ckpt, {})
    state = ckpt.restore(run.saved, run.generators)
    if state is None:
        state = {"iteration": 0, "rows": [], "wall_s": 0.0, "settings": settings}
    else:
        log.info("resuming from checkpoint %s at iteration %d", ckpt.path, state["iteration"])
    run.state = state
    return run


def train(
    cfg: dict,
    seed: int,
    out_dir: str | Path,
    on_iteration=None,
    snapshot_every: int | None = None,
) -> dict:
    """Train one seed; returns {'state', 'policy', 'device', 'checkpoint'}.

    `state['rows']` holds one row per iteration: iteration, frames (simulated steps so
    far), return (summed reward over the horizon, mean over the batch), final-step
    reward (mean over the batch), gradient norm before clipping, learning rate,
    iterations/s and wall time. `on_iteration(row)` is called after each (live logging).
    With `snapshot_every` (simulator steps, a multiple of batch_size x horizon),
    `state['snapshots']` holds a copy of the policy at 0 and every that many steps
    (rl.core.snapshots); taking them changes no number.
    Resumes from `out_dir/checkpoint.pt` when it exists and matches the config.
    """
    pcfg = cfg["pendulum"]
    device = resolve_device(pcfg["device"])
    run = _setup(cfg, seed, out_dir, device)
    state, net = run.state, run.net
    snaps = Snapshots(snapshot_every, state.setdefault("snapshots", []) if snapshot_every else [])

    def snapshot():
        steps = state["iteration"] * pcfg["batch_size"] * pcfg["horizon"]
        if snaps.due(steps):
            snaps.take(net, steps, state["iteration"], state["wall_s"])

    params = dict(make_params(pcfg["physics"], [pcfg["batch_size"]], device)["params"].items())
    rollout = make_rollout(net, pcfg["horizon"], pcfg["compile"])
    interval = cfg["progress"]["log_interval_seconds"]
    progress = Progress(pcfg["iterations"], "iterations", interval, state["iteration"])
    last_ckpt = time.monotonic()
    snapshot()
    try:
        with run.ckpt.on_interrupt(lambda: f"iteration {state['iteration']}"):
            while state["iteration"] < pcfg["iterations"]:
                t0 = time.perf_counter()
                values = _iteration(net, rollout, run.optim, run.sched, run.pendulum, params, pcfg)
                row = _row(state, pcfg, values, time.perf_counter() - t0, run.ckpt)
                snapshot()
                if on_iteration is not None:
                    on_iteration(row)
                progress.update(state["iteration"], ret=row["return"], final_step_reward=values[1])
                done = state["iteration"] >= pcfg["iterations"]
                if not done and (
                    state["iteration"] % pcfg["checkpoint_interval_iterations"] == 0
                    or time.monotonic() - last_ckpt >= 60 * pcfg["checkpoint_interval_minutes"]
                ):
                    run.checkpoint()
                    last_ckpt = time.monotonic()
    finally:
        progress.close()
    return {"state": state, "policy": net, "device": device, "checkpoint": run.ckpt.path}


def load_policy(cfg: dict, path: str | Path) -> nn.Sequential:
    weights = load(path, "trained pendulum policy")
    if "policy" not in weights:
        raise ValueError(
            f"'{path}' holds no 'policy' weights: it is not a policy written by "
            f"`python -m rl train-pendulum`. Rerun train_pendulum for this seed."
        )
    net = make_policy(cfg["pendulum"])
    try:
        net.load_state_dict(weights["policy"])
    except RuntimeError as exc:
        raise ValueError(
            f"The policy '{path}' does not fit the network the config describes "
            f"(pendulum.num_cells/depth changed since training): {exc}. Retrain or use the "
            f"config it was trained with."
        ) from None
    return net


def evaluate_controller(cfg: dict, net: nn.Module, device: torch.device | str = "cpu"):
    """Roll the trained controller out from the config's fixed starting states with the
    TorchRL environment (`env.rollout`), without gradients.

    Returns a long table: start (index), start_angle, start_speed, step, time_s, angle
    (wrapped to [-pi, pi), 0 upright), speed, torque (as applied, after clamping), reward.
    """
    pcfg = cfg["pendulum"]
    starts = torch.tensor(pcfg["eval_starts"], dtype=torch.float32, device=device)
    env = make_env_for(pcfg, 0, device)
    td = make_params(pcfg["physics"], [len(starts)], device)
    td["th"], td["thdot"] = starts[:, 0], starts[:, 1]
    policy = TensorDictModule(net, in_keys=["observation"], out_keys=["action"])
    with torch.no_grad():
        traj = env.rollout(pcfg["eval_steps"], policy, tensordict=env.reset(td), auto_reset=False)
    max_torque = traj["params", "max_torque"]
    n_starts, n_steps = traj.shape
    step = torch.arange(n_steps, device=device).expand(n_starts, n_steps)
    frame = {
        "start": torch.arange(n_starts, device=device).unsqueeze(1).expand(n_starts, n_steps),
        "start_angle": starts[:, :1].expand(n_starts, n_steps),
        "start_speed": starts[:, 1:].expand(n_starts, n_steps),
        "step": step,
        "time_s": step * traj["params", "dt"],
        "angle": angle_normalize(traj["th"].squeeze(-1)),
        "speed": traj["thdot"].squeeze(-1),
        "torque": traj["action"].squeeze(-1).clamp(-max_torque, max_torque),
        "reward": traj["next", "reward"].squeeze(-1),
    }
    return pd.DataFrame({k: v.reshape(-1).cpu().numpy() for k, v in frame.items()})

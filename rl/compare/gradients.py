"""Where the gradient method can fail, measured: the BPTT gradient of trained controllers
over rollouts of several horizons.

For each BPTT snapshot at a comparison budget (and the last one) and each horizon of
compare.probe_horizons, compare.probe_repeats independent estimates of the training loss's
gradient (minus the mean reward of compare.probe_batch rollouts from the training start
distribution, back-propagated through the differentiable pendulum, as `train-pendulum`
does) give: the gradient norm (its growth with the horizon is the exploding-gradient
problem of long rollouts), the mean pairwise cosine similarity of the estimates (how much
two batches agree on the direction: near 0, the estimate is noise), and the share of
steps whose torque the physics clamps to +-max_torque (their gradient with respect to the
policy's output is zero). Pure torch; each probe is seeded, so its numbers are a function
of the snapshot and the seed.
"""

from __future__ import annotations

import pandas as pd
import torch

from rl.compare.evaluate import bptt_policy
from rl.pendulum.env import batched_rollout, make_params
from rl.pendulum.train import make_env_for


def probed_snapshots(cfg: dict, snaps: list[dict]) -> list[dict]:
    """The snapshots at the comparison budgets, and the last one."""
    budgets = set(cfg["compare"]["budgets"]) | {snaps[-1]["sim_steps"]}
    return [s for s in snaps if s["sim_steps"] in budgets]


def _estimates(net, cfg: dict, horizon: int, seed: int) -> dict:
    """compare.probe_repeats gradient estimates of one snapshot at one horizon."""
    c, p = cfg["compare"], cfg["pendulum"]
    starts = make_env_for(p, c["seed_offset"] + seed, "cpu").base_env
    params = dict(make_params(p["physics"], [c["probe_batch"]])["params"].items())
    grads, losses, clamped = [], [], []
    for _ in range(c["probe_repeats"]):
        th, thdot = starts.initial_state((c["probe_batch"],))
        out = batched_rollout(net, th, thdot, params, horizon)
        loss = -out["reward"].mean()
        grad = torch.autograd.grad(loss, list(net.parameters()))
        grads.append(torch.cat([g.reshape(-1) for g in grad]))
        losses.append(float(loss.detach()))
        clamped.append(float((out["action"].abs() > params["max_torque"]).float().mean()))
    g = torch.stack(grads)
    unit = g / g.norm(dim=1, keepdim=True).clamp_min(1e-30)
    cos = unit @ unit.T
    n = len(grads)
    return {
        "grad_norm": float(g.norm(dim=1).mean()),
        "grad_cosine": float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1))),
        "clamped_fraction": sum(clamped) / n,
        "loss": sum(losses) / n,
    }


def probe(cfg: dict, found: dict, seed: int) -> pd.DataFrame:
    """One row per probed snapshot and horizon (a BPTT snapshots file's)."""
    rows = []
    for snap in probed_snapshots(cfg, found["snapshots"]):
        net = bptt_policy(cfg, snap["weights"])
        for horizon in cfg["compare"]["probe_horizons"]:
            axes = {k: snap[k] for k in ("sim_steps", "grad_steps", "wall_s")}
            rows.append({**axes, "horizon": horizon, **_estimates(net, cfg, horizon, seed)})
    return pd.DataFrame(rows)

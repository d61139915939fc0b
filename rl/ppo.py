"""PPO on a gymnasium MuJoCo task with TorchRL primitives: collector, GAE, ClipPPOLoss,
an on-policy replay buffer, Adam with an optional cosine schedule, gradient clipping.

All state the loop needs lives in `TrainState`-like dict built by `_state`, so a run
can be checkpointed at any batch boundary and resumed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torchrl.collectors import Collector
from torchrl.data.replay_buffers import ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.data.replay_buffers.storages import LazyTensorStorage
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from rl.checkpoint import load_checkpoint, save_checkpoint
from rl.envs import make_env
from rl.models import make_actor_critic
from rl.progress import Progress

log = logging.getLogger("rl")

TIMING_COLUMNS = ("frames_per_s", "wall_s")


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "Config key device is 'cuda' but no CUDA device is visible to torch "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Use device: auto "
            "or cpu, or run in the CUDA image with --nv."
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate_episode(env, actor, max_steps: int) -> tuple[float, int]:
    """One deterministic episode (the policy's mode); returns (raw return, length)."""
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        rollout = env.rollout(max_steps, actor, break_when_any_done=True)
    return float(rollout["next", "reward"].sum()), int(rollout["next", "step_count"].max())


def build(cfg: dict, seed: int, obs_stats: dict, device: torch.device):
    ppo = cfg["ppo"]
    env, _ = make_env(
        cfg["env"], seed, obs_stats=obs_stats, reward_scale=ppo["reward_scale"], device=device
    )
    obs_dim = env.observation_spec["observation"].shape[-1]
    actor, critic = make_actor_critic(ppo, obs_dim, env.action_spec, device)
    return env, actor, critic


def train(
    cfg: dict,
    seed: int,
    obs_stats: dict,
    out_dir: str | Path,
    on_batch=None,
) -> dict:
    """Train one seed; returns {'metrics': rows, 'eval': rows, 'actor':..., 'critic':...}.

    `on_batch(row, eval_row_or_None)` is called after every batch (live MLflow logging).
    Resumes from `out_dir/checkpoint.pt` when it exists.
    """
    ppo = cfg["ppo"]
    device = resolve_device(cfg["device"])
    torch.manual_seed(seed)
    env, actor, critic = build(cfg, seed, obs_stats, device)
    eval_env, _ = make_env(
        cfg["env"],
        seed + 2 * cfg["evaluation"]["seed_offset"],
        num_envs=1,
        obs_stats=obs_stats,
        device=device,
    )
    loss_module = ClipPPOLoss(
        actor_network=actor,
        critic_network=critic,
        clip_epsilon=ppo["clip_epsilon"],
        entropy_bonus=ppo["entropy_coef"] > 0,
        entropy_coeff=ppo["entropy_coef"],
        critic_coeff=ppo["critic_coef"],
        loss_critic_type=ppo["loss_critic_type"],
    )
    advantage = GAE(
        gamma=ppo["gamma"],
        lmbda=ppo["lmbda"],
        value_network=critic,
        average_gae=True,
        device=device,
    )
    optim = torch.optim.Adam(loss_module.parameters(), lr=ppo["lr"])
    n_batches = ppo["total_frames"] // ppo["frames_per_batch"]
    if ppo["anneal_lr"]:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=n_batches, eta_min=0.0)
    else:
        sched = torch.optim.lr_scheduler.ConstantLR(optim, factor=1.0, total_iters=0)

    ckpt_path = Path(out_dir) / "checkpoint.pt"
    state = {"frames": 0, "batches": 0, "metrics": [], "eval": [], "wall_s": 0.0}
    resumed = load_checkpoint(ckpt_path, actor, critic, optim, sched)
    if resumed is not None:
        state = resumed
        log.info("resuming from checkpoint %s at frame %d", ckpt_path, state["frames"])
        env.set_seed(seed + state["frames"])
    remaining = ppo["total_frames"] - state["frames"]

    buffer = ReplayBuffer(
        storage=LazyTensorStorage(ppo["frames_per_batch"], device=device),
        sampler=SamplerWithoutReplacement(),
        batch_size=ppo["minibatch_size"],
    )
    progress = Progress(
        ppo["total_frames"], "frames", cfg["progress"]["log_interval_seconds"], state["frames"]
    )
    last_ckpt_time = time.monotonic()
    next_eval = (state["frames"] // ppo["eval_interval_frames"] + 1) * ppo["eval_interval_frames"]
    next_ckpt = state["frames"] + ppo["checkpoint_interval_frames"]
    if remaining > 0:
        collector = Collector(
            env,
            actor,
            frames_per_batch=ppo["frames_per_batch"],
            total_frames=remaining,
            device=device,
            auto_register_policy_transforms=False,
        )
        t_batch = time.perf_counter()
        for data in collector:
            for _ in range(ppo["num_epochs"]):
                with torch.no_grad():
                    advantage(data)
                buffer.extend(data.reshape(-1))
                for minibatch in buffer:
                    losses = loss_module(minibatch)
                    loss = losses["loss_objective"] + losses["loss_critic"]
                    if "loss_entropy" in losses.keys():
                        loss = loss + losses["loss_entropy"]
                    loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(
                        loss_module.parameters(), ppo["max_grad_norm"]
                    )
                    optim.step()
                    optim.zero_grad(set_to_none=True)
            lr = optim.param_groups[0]["lr"]
            sched.step()
            collector.update_policy_weights_()
            state["frames"] += data.numel()
            state["batches"] += 1
            now = time.perf_counter()
            dt = now - t_batch
            t_batch = now
            state["wall_s"] += dt
            row = {
                "frames": state["frames"],
                "batch": state["batches"],
                "train_reward_mean": float(data["next", "reward"].mean()) / ppo["reward_scale"],
                "train_max_episode_length": int(data["next", "step_count"].max()),
                "loss_objective": float(losses["loss_objective"].detach()),
                "loss_critic": float(losses["loss_critic"].detach()),
                "loss_entropy": float(losses["loss_entropy"].detach())
                if "loss_entropy" in losses.keys()
                else 0.0,
                "entropy": float(losses["entropy"].detach())
                if "entropy" in losses.keys()
                else float("nan"),
                "grad_norm": float(grad_norm),
                "lr": lr,
                "frames_per_s": data.numel() / dt,
                "wall_s": state["wall_s"],
            }
            state["metrics"].append(row)
            eval_row = None
            if state["frames"] >= next_eval or state["frames"] >= ppo["total_frames"]:
                ret, length = evaluate_episode(eval_env, actor, cfg["env"]["max_episode_steps"])
                eval_row = {
                    "frames": state["frames"],
                    "eval_return": ret,
                    "eval_episode_length": length,
                }
                state["eval"].append(eval_row)
                next_eval += ppo["eval_interval_frames"]
                t_batch = time.perf_counter()  # evaluation time is not training throughput
            if on_batch is not None:
                on_batch(row, eval_row)
            progress.update(
                state["frames"],
                reward=row["train_reward_mean"],
                **({"eval_return": eval_row["eval_return"]} if eval_row else {}),
            )
            done = state["frames"] >= ppo["total_frames"]
            minutes = (time.monotonic() - last_ckpt_time) / 60
            if not done and (
                state["frames"] >= next_ckpt or minutes >= ppo["checkpoint_interval_minutes"]
            ):
                save_checkpoint(ckpt_path, state, actor, critic, optim, sched)
                next_ckpt = state["frames"] + ppo["checkpoint_interval_frames"]
                last_ckpt_time = time.monotonic()
        collector.shutdown()
    progress.close()
    env.close()
    eval_env.close()
    return {
        "state": state,
        "actor": actor,
        "critic": critic,
        "optim": optim,
        "sched": sched,
        "device": device,
        "checkpoint": ckpt_path,
    }

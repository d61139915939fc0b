"""The PPO loop on a gymnasium MuJoCo task, with TorchRL primitives: collector, GAE,
ClipPPOLoss, an on-policy replay buffer, Adam with an optional cosine schedule, gradient
clipping.

`train` reads top to bottom: collect a batch, compute advantages and update, record the
batch, evaluate when due, checkpoint when due. Everything the loop needs to continue is in
`Run` (its modules, optimiser and schedule) and `Run.state` (counters and metric rows), saved
as one `Checkpoint`, so a run resumes from any checkpoint it wrote.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torchrl.data.replay_buffers import ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.data.replay_buffers.storages import LazyTensorStorage
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from rl.core.checkpoint import Checkpoint, TrainingDiverged
from rl.core.config import PPO_SECTIONS, config_hash
from rl.core.device import resolve_device
from rl.core.progress import Progress
from rl.core.snapshots import Snapshots
from rl.ppo.collect import Collection
from rl.ppo.envs import make_eval_env, make_training_env
from rl.ppo.evaluate import evaluate_episode
from rl.ppo.models import make_actor_critic

log = logging.getLogger("rl")

TIMING_COLUMNS = ("frames_per_s", "wall_s")

# Bumped when the loop's state layout or its numbers change (optimiser parameter order,
# the training env: 3 = TrainingCopies): a checkpoint written by an older loop is then
# refused with the "other settings" error.
LOOP_VERSION = 3


def training_settings(cfg: dict) -> dict:
    """What a PPO run's numbers depend on: its config sections and the loop's version (a
    checkpoint must match them)."""
    settings = {k: cfg[k] for k in PPO_SECTIONS}
    return {**settings, "loop_version": LOOP_VERSION}


def build(cfg: dict, seed: int, obs_stats: dict, device: torch.device):
    """The training env and the actor and critic sized for it."""
    ppo = cfg["ppo"]
    env = make_training_env(
        cfg["env"],
        seed,
        obs_stats=obs_stats,
        reward_scale=ppo["reward_scale"],
        device=device,
        episode_steps=ppo["train_episode_steps"],
        reset_noise_scale=ppo["train_reset_noise_scale"],
    )
    obs_dim = env.observation_spec["observation"].shape[-1]
    actor, critic = make_actor_critic(ppo, obs_dim, env.action_spec, device)
    return env, actor, critic


@dataclass
class Run:
    """One seed's training: what the loop steps, and its resumable state."""

    cfg: dict
    device: torch.device
    env: object
    eval_env: object
    eval_seed: int
    actor: torch.nn.Module
    critic: torch.nn.Module
    advantage: GAE
    loss_fn: object
    params: list
    optim: torch.optim.Optimizer
    sched: object
    ckpt: Checkpoint
    state: dict
    snapshots: Snapshots | None = None

    @property
    def modules(self) -> dict:
        """What a checkpoint holds besides the loop state (by state_dict)."""
        return {
            "actor": self.actor,
            "critic": self.critic,
            "optim": self.optim,
            "sched": self.sched,
        }

    def checkpoint(self) -> None:
        self.ckpt.save(f"frame {self.state['frames']}", self.state, self.modules)


def _loss_fn(loss_module, compile: bool):
    """The PPO loss of a minibatch, summed; compiled (forward and backward) when asked."""

    def loss_fn(minibatch):
        losses = loss_module(minibatch)
        loss = losses["loss_objective"] + losses["loss_critic"]
        if "loss_entropy" in losses.keys():
            loss = loss + losses["loss_entropy"]
        return loss, losses.detach()

    return torch.compile(loss_fn) if compile else loss_fn


def _loss_module(actor, critic, ppo: dict) -> ClipPPOLoss:
    return ClipPPOLoss(
        actor_network=actor,
        critic_network=critic,
        clip_epsilon=ppo["clip_epsilon"],
        entropy_bonus=ppo["entropy_coef"] > 0,
        entropy_coeff=ppo["entropy_coef"],
        critic_coeff=ppo["critic_coef"],
        loss_critic_type=ppo["loss_critic_type"],
        # Use actor and critic as they are: the functional default swaps a parameter copy
        # into both modules on every call.
        functional=False,
    )


def _schedule(optim, ppo: dict):
    if ppo["anneal_lr"]:
        n_batches = ppo["total_frames"] // ppo["frames_per_batch"]
        return torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=n_batches, eta_min=0.0)
    return torch.optim.lr_scheduler.ConstantLR(optim, factor=1.0, total_iters=0)


def setup(cfg: dict, seed: int, obs_stats: dict, out_dir: str | Path) -> Run:
    """Build the run (seeded) and restore its checkpoint when there is one."""
    ppo = cfg["ppo"]
    device = resolve_device(cfg["device"])
    torch.manual_seed(seed)
    env, actor, critic = build(cfg, seed, obs_stats, device)
    eval_seed = seed + 2 * cfg["evaluation"]["seed_offset"]
    # reseeded before each evaluation; gymnasium's MuJoCo whatever the training backend:
    # a policy trained on mujoco-warp is judged on the reference physics
    eval_env = make_eval_env(cfg["env"], eval_seed, obs_stats=obs_stats, device=device)
    loss_module = _loss_module(actor, critic, ppo)
    advantage = GAE(
        gamma=ppo["gamma"],
        lmbda=ppo["lmbda"],
        value_network=critic,
        average_gae=True,
        device=device,
    )
    # fused: one kernel for all parameters instead of a loop of small ops (CPU and CUDA)
    params = list(loss_module.parameters())
    optim = torch.optim.Adam(params, lr=ppo["lr"], fused=True)
    loss_fn = _loss_fn(loss_module, ppo["compile"])
    sched = _schedule(optim, ppo)
    settings = config_hash(training_settings(cfg))
    ckpt = Checkpoint(Path(out_dir) / "checkpoint.pt", settings, "PPO")
    state = {"frames": 0, "batches": 0, "metrics": [], "eval": [], "wall_s": 0.0}
    state |= {"settings": settings, "segment_start": 0}
    run = Run(
        cfg,
        device,
        env,
        eval_env,
        eval_seed,
        actor,
        critic,
        advantage,
        loss_fn,
        params,
        optim,
        sched,
        ckpt,
        state,
    )
    resumed = ckpt.restore(run.modules)
    if resumed is not None:
        run.state = resumed
        exact = resumed["segment_start"] == resumed["frames"]
        log.info(
            "resuming from checkpoint %s at frame %d%s",
            ckpt.path,
            resumed["frames"],
            "" if exact else " (mid-segment: in-flight episodes restart)",
        )
    return run


def update(data, run: Run) -> tuple[dict, torch.Tensor]:
    """PPO epochs over one collected batch: GAE recomputed each epoch, clipped gradients.

    The on-policy buffer is made per batch: no sampler state outlives a batch, so a
    resumed run draws the same minibatches as an uninterrupted one.
    """
    ppo = run.cfg["ppo"]
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(ppo["frames_per_batch"], device=data.device),
        sampler=SamplerWithoutReplacement(drop_last=True),
        batch_size=ppo["minibatch_size"],
    )
    for _ in range(ppo["num_epochs"]):
        with torch.no_grad():
            run.advantage(data)
        buffer.extend(data.reshape(-1))
        for minibatch in buffer:
            loss, losses = run.loss_fn(minibatch)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(run.params, ppo["max_grad_norm"])
            run.optim.step()
            run.optim.zero_grad(set_to_none=True)
    return losses, grad_norm


def batch_row(state: dict, data, losses, grad_norm, lr: float, ppo: dict, dt: float) -> dict:
    """The metrics row of one batch (`frames` counted after it)."""
    frames = state["frames"] + data.numel()
    return {
        "frames": frames,
        "batch": state["batches"] + 1,
        "train_reward_mean": float(data["next", "reward"].mean()) / ppo["reward_scale"],
        "train_max_episode_length": int(data["next", "step_count"].max()),
        "loss_objective": float(losses["loss_objective"]),
        "loss_critic": float(losses["loss_critic"]),
        "loss_entropy": float(losses.get("loss_entropy", torch.zeros(()))),
        "entropy": float(losses.get("entropy", torch.tensor(float("nan")))),
        "grad_norm": float(grad_norm),
        "lr": lr,
        "frames_per_s": data.numel() / dt,
        "wall_s": state["wall_s"] + dt,
    }


def record(run: Run, row: dict) -> None:
    """Commit a batch's row to the loop state; a non-finite loss or gradient stops the run."""
    if not all(map(math.isfinite, (row["loss_objective"], row["loss_critic"], row["grad_norm"]))):
        state = run.state
        raise TrainingDiverged(
            f"Training diverged at frame {state['frames']}: non-finite loss or "
            f"gradient (loss_objective={row['loss_objective']}, "
            f"loss_critic={row['loss_critic']}, grad_norm={row['grad_norm']}). "
            f"The last good checkpoint ({run.ckpt.path}, frame "
            f"{state['segment_start']}) is kept. Lower ppo.lr or ppo.max_grad_norm, "
            f"or check the observation statistics, then rerun to resume."
        )
    run.state["frames"], run.state["batches"] = row["frames"], row["batch"]
    run.state["wall_s"] = row["wall_s"]
    run.state["metrics"].append(row)


def snapshot(run: Run) -> None:
    """A copy of the actor when one is due at the frames done (rl.core.snapshots)."""
    snaps, state, ppo = run.snapshots, run.state, run.cfg["ppo"]
    if snaps is not None and snaps.due(state["frames"]):
        per_batch = ppo["num_epochs"] * (ppo["frames_per_batch"] // ppo["minibatch_size"])
        snaps.take(run.actor, state["frames"], state["batches"] * per_batch, state["wall_s"])


def evaluate(run: Run) -> dict:
    """One deterministic episode on the evaluation env, seeded by the frames done."""
    frames = run.state["frames"]
    run.eval_env.set_seed(run.eval_seed + frames)
    ret, length = evaluate_episode(run.eval_env, run.actor, run.cfg["env"]["max_episode_steps"])
    row = {"frames": frames, "eval_return": ret, "eval_episode_length": length}
    run.state["eval"].append(row)
    return row


def segment_frames(state: dict, ppo: dict) -> tuple[int, int]:
    """(end, frames to collect) of the checkpoint segment that starts at the frames done:
    segments end on multiples of checkpoint_interval_frames (or the budget), in batches."""
    interval, batch = ppo["checkpoint_interval_frames"], ppo["frames_per_batch"]
    end = min((state["frames"] // interval + 1) * interval, ppo["total_frames"])
    return end, -(-(end - state["frames"]) // batch) * batch


class Due:
    """When the loop evaluates (every eval_interval_frames and at the end) and when it
    checkpoints between segment ends (every checkpoint_interval_minutes)."""

    def __init__(self, ppo: dict, frames: int):
        self.every, self.total = ppo["eval_interval_frames"], ppo["total_frames"]
        self.next_eval = (frames // self.every + 1) * self.every
        self.minutes = ppo["checkpoint_interval_minutes"]
        self.last_checkpoint = time.monotonic()

    def evaluation(self, frames: int) -> bool:
        if frames >= self.next_eval or frames >= self.total:
            self.next_eval += self.every
            return True
        return False

    def checkpoint(self) -> bool:
        return (time.monotonic() - self.last_checkpoint) / 60 >= self.minutes

    def checkpointed(self) -> None:
        self.last_checkpoint = time.monotonic()


def train_segment(run: Run, collection: Collection, seed: int, due: Due, progress, on_batch):
    """Collect, update, record, evaluate when due, checkpoint when due: one checkpoint
    segment, from environments seeded by (seed, frames done)."""
    ppo, state = run.cfg["ppo"], run.state
    end, frames = segment_frames(state, ppo)
    state["segment_start"] = state["frames"]
    t_batch = time.perf_counter()
    for data in collection.segment(seed + state["frames"], frames):
        losses, grad_norm = update(data, run)
        lr = run.optim.param_groups[0]["lr"]
        run.sched.step()
        collection.update_policy_weights_()
        row = batch_row(state, data, losses, grad_norm, lr, ppo, time.perf_counter() - t_batch)
        record(run, row)
        snapshot(run)
        eval_row = evaluate(run) if due.evaluation(state["frames"]) else None
        if on_batch is not None:
            on_batch(row, eval_row)
        shown = {"eval_return": eval_row["eval_return"]} if eval_row else {}
        progress.update(state["frames"], reward=row["train_reward_mean"], **shown)
        if due.checkpoint() and state["frames"] < end:
            run.checkpoint()
            due.checkpointed()
        t_batch = time.perf_counter()  # evaluations and checkpoints are not throughput
    state["segment_start"] = state["frames"]
    if state["frames"] < ppo["total_frames"]:
        run.checkpoint()
        due.checkpointed()


def train(
    cfg: dict,
    seed: int,
    obs_stats: dict,
    out_dir: str | Path,
    on_batch=None,
    snapshot_every: int | None = None,
) -> dict:
    """Train one seed; returns the loop state, the modules and the device.

    `on_batch(row, eval_row_or_None)` is called after every batch (live MLflow logging).
    With `snapshot_every` (frames, a multiple of frames_per_batch), `state['snapshots']`
    holds a copy of the actor at 0 and every that many frames (rl.core.snapshots); taking
    them changes no number.

    Resumable: the run is cut into segments of `checkpoint_interval_frames`; each
    segment starts a collector on environments seeded from (seed, frames done), and ends
    with a checkpoint of everything the loop needs. A run resumed from such a checkpoint
    therefore reproduces the uninterrupted run exactly. A checkpoint written on the
    minutes trigger sits mid-segment: resuming from it restarts the in-flight episodes
    (named in the log), the rest of the state is exact. Resume needs the same settings:
    a checkpoint from another config is refused.
    """
    ppo = cfg["ppo"]
    run = setup(cfg, seed, obs_stats, out_dir)
    state = run.state
    if snapshot_every:
        run.snapshots = Snapshots(snapshot_every, state.setdefault("snapshots", []))
        snapshot(run)
    if on_batch is not None:  # rows a killed process may not have logged yet
        evals = {e["frames"]: e for e in state["eval"]}
        for row in state["metrics"]:
            on_batch(row, evals.get(row["frames"]))
    interval = cfg["progress"]["log_interval_seconds"]
    progress = Progress(ppo["total_frames"], "frames", interval, state["frames"])
    due = Due(ppo, state["frames"])
    collection = Collection(cfg, obs_stats, run.env, run.actor, run.device)
    try:
        with run.ckpt.on_interrupt(lambda: f"frame {state['frames']}"):
            while state["frames"] < ppo["total_frames"]:
                train_segment(run, collection, seed, due, progress, on_batch)
    finally:
        progress.close()
        collection.shutdown()
        run.env.close()
        run.eval_env.close()
    return {
        "state": state,
        "actor": run.actor,
        "critic": run.critic,
        "optim": run.optim,
        "sched": run.sched,
        "device": run.device,
        "checkpoint": run.ckpt.path,
    }

"""PPO on a gymnasium MuJoCo task with TorchRL primitives: collector, GAE, ClipPPOLoss,
an on-policy replay buffer, Adam with an optional cosine schedule, gradient clipping.

All state the loop needs lives in `TrainState`-like dict built by `_state`, so a run
can be checkpointed at any batch boundary and resumed.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from pathlib import Path

import torch
from torchrl.collectors import Collector, MultiSyncCollector
from torchrl.data.replay_buffers import ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.data.replay_buffers.storages import LazyTensorStorage
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from rl.checkpoint import load_checkpoint, save_checkpoint
from rl.config import config_hash
from rl.envs import make_eval_env, make_training_env
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


def evaluate_episode(env, actor, max_steps: int, on_state=None) -> tuple[float, int]:
    """One deterministic episode (the policy's mode); returns (raw return, length).

    `on_state(env)` is called after the reset and after every step but the last (the
    environment resets itself on that one): the states of the episode, one per step, for
    rendering. It must not act on the env; the episode is the same with or without it.
    """
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        if on_state is None:
            rollout = env.rollout(max_steps, actor, break_when_any_done=True)
        else:
            start = env.reset()
            on_state(env)
            rollout = env.rollout(
                max_steps,
                actor,
                tensordict=start,
                auto_reset=False,
                break_when_any_done=True,
                callback=lambda env, _: on_state(env),
            )
    return float(rollout["next", "reward"].sum()), int(rollout["next", "step_count"].max())


def build(cfg: dict, seed: int, obs_stats: dict, device: torch.device):
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


class Collection:
    """The run's collection, one checkpoint segment at a time: `segment(seed, frames)`
    yields that many frames in batches, from training envs seeded with `seed` (so a run
    resumed at a segment start reproduces the uninterrupted one).

    ppo.collector_workers 1: a TorchRL Collector per segment on `env`. More: one TorchRL
    MultiSyncCollector for the whole run, whose worker processes (started once: each
    imports torch and builds its own envs, ~3 s) step env.num_envs / workers copies each
    with their own copy of the policy, in parallel; synchronous, so every batch is
    collected by the current policy, as with one process. At each segment start the
    workers are reseeded (worker k: its envs and its torch generator) and reset.
    """

    def __init__(self, cfg: dict, obs_stats: dict, env, actor, device: torch.device):
        self._cfg, self._obs_stats, self._env, self._actor = cfg, obs_stats, env, actor
        self._device = device
        self._workers = cfg["ppo"]["collector_workers"]
        self._collector = None

    def _worker_envs(self) -> list:
        """Env constructors of the workers (picklable: worker processes are spawned); worker
        k's copies are copies k*n..(k+1)*n-1 of one env (their time limits)."""
        env_cfg, ppo, w = self._cfg["env"], self._cfg["ppo"], self._workers
        n = env_cfg["num_envs"] // w
        return [
            functools.partial(
                make_training_env,
                env_cfg,
                0,  # reseeded by set_seed before collecting
                num_envs=n,
                obs_stats=self._obs_stats,
                reward_scale=ppo["reward_scale"],
                device=self._device,
                episode_steps=ppo["train_episode_steps"],
                reset_noise_scale=ppo["train_reset_noise_scale"],
                first_copy=k * n,
            )
            for k in range(w)
        ]

    def segment(self, seed: int, frames: int):
        ppo = self._cfg["ppo"]
        if self._workers == 1:
            self._env.set_seed(seed)
            self._collector = collector = Collector(
                self._env,
                self._actor,
                frames_per_batch=ppo["frames_per_batch"],
                total_frames=frames,
                device=self._device,
                auto_register_policy_transforms=False,
                compile_policy=ppo["compile"] or None,
                # trajectory ids are not used here; tracking them costs ~85 us a step
                track_traj_ids=False,
            )
            try:
                yield from collector
            finally:
                collector.shutdown()
                self._collector = None
            return
        if self._collector is None:
            self._collector = MultiSyncCollector(
                self._worker_envs(),
                self._actor,
                frames_per_batch=ppo["frames_per_batch"],
                total_frames=-1,
                device=self._device,
                cat_results=0,  # the workers' copies side by side: [num_envs, time]
                compile_policy=ppo["compile"] or None,
            )
        self._collector.set_seed(seed)
        for _ in range(frames // ppo["frames_per_batch"]):
            # the workers' batches joined carry no device of their own
            yield self._collector.next().to(self._device)

    def update_policy_weights_(self) -> None:
        self._collector.update_policy_weights_()

    def shutdown(self) -> None:
        if self._collector is not None:
            self._collector.shutdown()
            self._collector = None


# Bumped when the loop's state layout or its numbers change (optimiser parameter order,
# the training env: 3 = TrainingCopies): a checkpoint written by an older loop is then
# refused with the "other settings" error.
LOOP_VERSION = 3


def training_settings(cfg: dict) -> dict:
    """What a PPO run's numbers depend on: its config sections and the loop's version (a
    checkpoint must match them)."""
    settings = {k: cfg[k] for k in ("env", "obs_norm", "ppo", "evaluation", "device")}
    return {**settings, "loop_version": LOOP_VERSION}


class TrainingDiverged(RuntimeError):
    pass


def _loss_fn(loss_module, compile: bool):
    """The PPO loss of a minibatch, summed; compiled (forward and backward) when asked."""

    def loss_fn(minibatch):
        losses = loss_module(minibatch)
        loss = losses["loss_objective"] + losses["loss_critic"]
        if "loss_entropy" in losses.keys():
            loss = loss + losses["loss_entropy"]
        return loss, losses.detach()

    return torch.compile(loss_fn) if compile else loss_fn


def _update(data, advantage, loss_fn, params, optim, ppo) -> tuple[dict, torch.Tensor]:
    """PPO epochs over one collected batch: GAE recomputed each epoch, clipped gradients.

    The on-policy buffer is made per batch: no sampler state outlives a batch, so a
    resumed run draws the same minibatches as an uninterrupted one.
    """
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(ppo["frames_per_batch"], device=data.device),
        sampler=SamplerWithoutReplacement(drop_last=True),
        batch_size=ppo["minibatch_size"],
    )
    for _ in range(ppo["num_epochs"]):
        with torch.no_grad():
            advantage(data)
        buffer.extend(data.reshape(-1))
        for minibatch in buffer:
            loss, losses = loss_fn(minibatch)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, ppo["max_grad_norm"])
            optim.step()
            optim.zero_grad(set_to_none=True)
    return losses, grad_norm


def train(
    cfg: dict,
    seed: int,
    obs_stats: dict,
    out_dir: str | Path,
    on_batch=None,
) -> dict:
    """Train one seed; returns the loop state, the modules and the device.

    `on_batch(row, eval_row_or_None)` is called after every batch (live MLflow logging).

    Resumable: the run is cut into segments of `checkpoint_interval_frames`; each
    segment starts a collector on environments seeded from (seed, frames done), and ends
    with a checkpoint of everything the loop needs. A run resumed from such a checkpoint
    therefore reproduces the uninterrupted run exactly. A checkpoint written on the
    minutes trigger or on Ctrl-C sits mid-segment: resuming from it restarts the
    in-flight episodes (named in the log), the rest of the state is exact.
    Resume needs the same settings: a checkpoint from another config is refused.
    """
    ppo = cfg["ppo"]
    device = resolve_device(cfg["device"])
    torch.manual_seed(seed)
    env, actor, critic = build(cfg, seed, obs_stats, device)
    eval_seed = seed + 2 * cfg["evaluation"]["seed_offset"]
    # the evaluation env, reseeded before each evaluation (the first episode after a seed);
    # gymnasium's MuJoCo whatever the training backend: a policy trained on mujoco-warp is
    # judged on the reference physics
    eval_env = make_eval_env(cfg["env"], eval_seed, obs_stats=obs_stats, device=device)
    loss_module = ClipPPOLoss(
        actor_network=actor,
        critic_network=critic,
        clip_epsilon=ppo["clip_epsilon"],
        entropy_bonus=ppo["entropy_coef"] > 0,
        entropy_coeff=ppo["entropy_coef"],
        critic_coeff=ppo["critic_coef"],
        loss_critic_type=ppo["loss_critic_type"],
        # Use actor and critic as they are: the functional default swaps a parameter copy
        # into both modules on every call (loss forward 3.8 -> 2.7 ms at minibatch 64).
        functional=False,
    )
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
    n_batches = ppo["total_frames"] // ppo["frames_per_batch"]
    if ppo["anneal_lr"]:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=n_batches, eta_min=0.0)
    else:
        sched = torch.optim.lr_scheduler.ConstantLR(optim, factor=1.0, total_iters=0)

    ckpt_path = Path(out_dir) / "checkpoint.pt"
    settings = config_hash(training_settings(cfg))
    state = {
        "frames": 0,
        "batches": 0,
        "metrics": [],
        "eval": [],
        "wall_s": 0.0,
        "settings": settings,
        "segment_start": 0,
    }
    resumed = load_checkpoint(ckpt_path, actor, critic, optim, sched, settings)
    if resumed is not None:
        state = resumed
        exact = state["segment_start"] == state["frames"]
        log.info(
            "resuming from checkpoint %s at frame %d%s",
            ckpt_path,
            state["frames"],
            "" if exact else " (mid-segment: in-flight episodes restart)",
        )

        if on_batch is not None:
            # rows a killed process may not have logged yet (trackers skip known points)
            evals = {e["frames"]: e for e in state["eval"]}
            for row in state["metrics"]:
                on_batch(row, evals.get(row["frames"]))

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, state, actor, critic, optim, sched)

    progress = Progress(
        ppo["total_frames"], "frames", cfg["progress"]["log_interval_seconds"], state["frames"]
    )
    interval = ppo["checkpoint_interval_frames"]
    next_eval = (state["frames"] // ppo["eval_interval_frames"] + 1) * ppo["eval_interval_frames"]
    last_ckpt_time = time.monotonic()
    collection = Collection(cfg, obs_stats, env, actor, device)
    try:
        while state["frames"] < ppo["total_frames"]:
            segment_end = min((state["frames"] // interval + 1) * interval, ppo["total_frames"])
            segment_frames = -(-(segment_end - state["frames"]) // ppo["frames_per_batch"])
            segment_frames *= ppo["frames_per_batch"]
            state["segment_start"] = state["frames"]
            t_batch = time.perf_counter()
            for data in collection.segment(seed + state["frames"], segment_frames):
                losses, grad_norm = _update(data, advantage, loss_fn, params, optim, ppo)
                lr = optim.param_groups[0]["lr"]
                sched.step()
                collection.update_policy_weights_()
                row = _row(state, data, losses, grad_norm, lr, ppo, time.perf_counter() - t_batch)
                if not all(
                    map(
                        math.isfinite, (row["loss_objective"], row["loss_critic"], row["grad_norm"])
                    )
                ):
                    raise TrainingDiverged(
                        f"Training diverged at frame {state['frames']}: non-finite loss or "
                        f"gradient (loss_objective={row['loss_objective']}, "
                        f"loss_critic={row['loss_critic']}, grad_norm={row['grad_norm']}). "
                        f"The last good checkpoint ({ckpt_path}, frame "
                        f"{state['segment_start']}) is kept. Lower ppo.lr or ppo.max_grad_norm, "
                        f"or check the observation statistics, then rerun to resume."
                    )
                _commit(state, row)
                eval_row = None
                if state["frames"] >= next_eval or state["frames"] >= ppo["total_frames"]:
                    eval_env.set_seed(eval_seed + state["frames"])
                    ret, length = evaluate_episode(eval_env, actor, cfg["env"]["max_episode_steps"])
                    eval_row = {
                        "frames": state["frames"],
                        "eval_return": ret,
                        "eval_episode_length": length,
                    }
                    state["eval"].append(eval_row)
                    next_eval += ppo["eval_interval_frames"]
                if on_batch is not None:
                    on_batch(row, eval_row)
                progress.update(
                    state["frames"],
                    reward=row["train_reward_mean"],
                    **({"eval_return": eval_row["eval_return"]} if eval_row else {}),
                )
                minutes = (time.monotonic() - last_ckpt_time) / 60
                if minutes >= ppo["checkpoint_interval_minutes"] and state["frames"] < segment_end:
                    checkpoint()
                    last_ckpt_time = time.monotonic()
                t_batch = time.perf_counter()  # evaluation and checkpoints are not throughput
            state["segment_start"] = state["frames"]
            if state["frames"] < ppo["total_frames"]:
                checkpoint()
                last_ckpt_time = time.monotonic()
    except KeyboardInterrupt:
        # No checkpoint here: the interrupt may land mid-update, with weights that match
        # no frame count. The last segment checkpoint stays valid.
        log.warning(
            "interrupted at frame %d; rerun to resume from the last checkpoint (%s)",
            state["frames"],
            ckpt_path if ckpt_path.exists() else "none yet",
        )
        raise
    finally:
        progress.close()
        collection.shutdown()
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


def _row(state, data, losses, grad_norm, lr, ppo, dt) -> dict:
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


def _commit(state: dict, row: dict) -> None:
    state["frames"], state["batches"], state["wall_s"] = row["frames"], row["batch"], row["wall_s"]
    state["metrics"].append(row)

"""Collection for PPO: one checkpoint segment of batches at a time, from TorchRL collectors
(env.backend gymnasium) or the device-resident rollout (mujoco-warp: rl.ppo.resident)."""

from __future__ import annotations

import functools

import torch
from torchrl.collectors import Collector, MultiSyncCollector

from rl.ppo.envs import make_training_env
from rl.ppo.resident import DeviceRollout


def make_collection(cfg: dict, obs_stats: dict, env, actor, device: torch.device):
    """The run's collection: `segment(seed, frames)` yields batches ([num_envs, steps]),
    `update_policy_weights_()` after each update, `shutdown()` at the end."""
    ppo = cfg["ppo"]
    if cfg["env"]["backend"] == "mujoco-warp":
        fpb = ppo["frames_per_batch"]
        return DeviceRollout(env, actor, fpb, compile=ppo["compile"], device=device)
    return Collection(cfg, obs_stats, env, actor, device)


class Collection:
    """The run's collection, one checkpoint segment at a time: `segment(seed, frames)`
    yields that many frames in batches, from training envs seeded with `seed` (so a run
    resumed at a segment start reproduces the uninterrupted one).

    ppo.collector_workers 1: a TorchRL Collector per segment on `env`. More: one TorchRL
    MultiSyncCollector for the whole run, whose worker processes (started once per run, a
    one-off start-up cost: each imports torch and builds its own envs) step
    env.num_envs / workers copies each with their own copy of the policy, in parallel;
    synchronous, so every batch is collected by the current policy, as with one process.
    At each segment start the workers are reseeded (worker k: its envs and its torch
    generator) and reset.
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
                # trajectory ids are not used here, and tracking them adds a cost to every
                # step (docs/benchmarks.md)
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

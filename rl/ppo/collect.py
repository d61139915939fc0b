"""Collection for PPO: one collector for the whole run, from TorchRL collectors (env.backend
gymnasium) or the device-resident rollout (mujoco-warp: rl.ppo.resident), whose episodes run
on across batches, checkpoints and resumes."""

from __future__ import annotations

import functools
from collections import OrderedDict

import torch
from torchrl.collectors import MultiSyncCollector

from rl.ppo.continuing import ContinuingCollector
from rl.ppo.envs import make_run_env
from rl.ppo.resident import DeviceRollout


def make_collection(cfg: dict, seed: int, obs_stats: dict, env, actor, device: torch.device):
    """The run's collection: `batches(n)` yields the next n batches ([num_envs, steps]),
    `update_policy_weights_()` after each update, `state_dict()` / `load_state_dict()` what
    continuing it needs (for the checkpoint), `shutdown()` at the end. `env`: the training
    env, seeded with `seed` (the workers' envs are seeded from it too)."""
    ppo = cfg["ppo"]
    if cfg["env"]["backend"] == "mujoco-warp":
        fpb = ppo["frames_per_batch"]
        return DeviceRollout(env, actor, fpb, compile=ppo["compile"], device=device)
    if ppo["overlap"]:
        from rl.ppo.overlap import OverlappedCollection

        return OverlappedCollection(cfg, seed, obs_stats, actor, device)
    return Collection(cfg, seed, obs_stats, env, actor, device)


class Collection:
    """The run's TorchRL collection, one collector from the first batch to the last, its
    episodes continuing across batches and checkpoints.

    ppo.collector_workers 1: a ContinuingCollector on `env`. More: a MultiSyncCollector
    whose worker processes (started once per run, a one-off start-up cost: each imports
    torch and builds its own envs) run ContinuingCollectors stepping env.num_envs / workers
    copies each with their own copy of the policy, in parallel; synchronous, so every batch
    is collected by the current policy, as with one process. The workers are seeded once
    from `seed` (worker k: its envs and its torch generator); their state_dicts travel
    through the pipes to the checkpoint and back.
    """

    def __init__(self, cfg: dict, seed: int, obs_stats: dict, env, actor, device):
        self._cfg, self._obs_stats, self._device = cfg, obs_stats, device
        ppo = cfg["ppo"]
        self._workers = ppo["collector_workers"]
        common = {
            "frames_per_batch": ppo["frames_per_batch"],
            "total_frames": -1,
            "device": device,
            "compile_policy": ppo["compile"] or None,
        }
        if self._workers == 1:
            self._collector = ContinuingCollector(
                env,
                actor,
                auto_register_policy_transforms=False,
                # trajectory ids are not used here, and tracking them adds a cost to every
                # step (docs/benchmarks.md)
                track_traj_ids=False,
                **common,
            )
        else:
            self._collector = MultiSyncCollector(
                self._worker_envs(),
                actor,
                collector_class=ContinuingCollector,
                cat_results=0,  # the workers' copies side by side: [num_envs, time]
                **common,
            )
            self._collector.set_seed(seed)
        self._iterator = iter(self._collector)

    def _worker_envs(self) -> list:
        """Env constructors of the workers (picklable: worker processes are spawned); worker
        k's copies are copies k*n..(k+1)*n-1 of one env (their time limits)."""
        n = self._cfg["env"]["num_envs"] // self._workers
        make = functools.partial(make_run_env, self._cfg, 0, self._obs_stats)  # seeded later
        return [
            functools.partial(make, device=self._device, num_envs=n, first_copy=k * n)
            for k in range(self._workers)
        ]

    def batches(self, count: int):
        for _ in range(count):
            # the workers' batches joined carry no device of their own
            yield next(self._iterator).to(self._device)

    def update_policy_weights_(self) -> None:
        self._collector.update_policy_weights_()

    def state_dict(self) -> OrderedDict:
        return self._collector.state_dict()

    def load_state_dict(self, state_dict) -> None:
        self._collector.load_state_dict(state_dict)
        self._collector.update_policy_weights_()  # the workers act with the restored actor

    def shutdown(self) -> None:
        self._collector.shutdown()

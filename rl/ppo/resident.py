"""The device-resident collection of env.backend mujoco-warp, and the graphing of a step.

`DeviceRollout` collects each batch by stepping `WarpCopies` itself, the policy and the
physics on the run's device one after the other: fixed shapes, the finished worlds reset by
a mask after every step, no tensor read on the host. TorchRL's collectors cannot do that:
they ask the host whether any copy is done after every step (a GPU sync each time). The
batch has their layout ([num_envs, steps], root keys and a "next" entry), so the update
cannot tell the two apart.

`graphed(fn, device)` is the LeanRL recipe for a step that runs thousands of times:
`torch.compile`, and on CUDA `tensordict.nn.CudaGraphModule` over it, which records the
compiled kernels once and replays them with the inputs copied into its buffers. On the CPU
the compiled function runs as is.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict


def graphed(fn, device: torch.device, *, warmup: int = 2):
    """`fn` (TensorDict in, TensorDict out) compiled; on CUDA also captured as a CUDA graph
    after `warmup` calls (compilation and recompilations happen there, on a side stream).

    Note: tensordict's CudaGraphModule (0.14) calls torch.cuda.synchronize() before each
    replay; CUDA's sync debug mode does not flag that explicit wait (docs/benchmarks.md)."""
    fn = torch.compile(fn)
    if device.type != "cuda":
        return fn
    from tensordict.nn import CudaGraphModule

    return CudaGraphModule(fn, warmup=warmup, in_keys=[], out_keys=[], device=device)


class DeviceRollout:
    """Batches of `frames_per_batch` frames from `env` (a WarpCopies of n worlds, seeded)
    under `actor`, frames_per_batch / n steps each, the worlds' episodes running on from batch
    to batch; the same interface as rl.ppo.collect.Collection (`batches`,
    `update_policy_weights_`, `state_dict`, `load_state_dict`, `shutdown`).

    The actor acts on its own parameters (no copy to refresh: the update changes them in
    place), without gradients, from a new tensordict of the observation, so a graphed
    policy's outputs are copied out of its buffers before the next step overwrites them.
    `compile`: the policy compiled, and graphed on CUDA."""

    def __init__(self, env, actor, frames_per_batch: int, *, compile: bool, device):
        self._env, self._steps = env, frames_per_batch // env.batch_size[0]
        self._keys = list(actor.in_keys)

        def act(td: TensorDict) -> TensorDict:
            return actor(td.select(*self._keys))

        self._policy = graphed(act, torch.device(device), warmup=4) if compile else act
        self._td = None  # what the policy acts on next

    def state_dict(self) -> dict:
        """What continuing needs: the worlds' state (their observations and step counts are
        what the policy acts on next)."""
        return {"copies": self._env.save_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._env.load_state(state_dict["copies"])
        self._td = self._env.current()

    def batches(self, count: int):
        """The next `count` batches; the worlds' episodes run on from the last batch."""
        if self._td is None:
            self._td = self._env.current()
        for _ in range(count):
            self._td, batch = self._batch(self._td)
            yield batch

    @torch.no_grad()
    def _batch(self, td: TensorDict) -> tuple[TensorDict, TensorDict]:
        steps = []
        for _ in range(self._steps):
            td = td.update(self._policy(td))
            step = self._env.advance(td["action"])
            steps.append(td.set("next", step))
            td = self._env.restart(step["done"])  # finished worlds start again
        return td, torch.stack(steps, dim=1)

    def update_policy_weights_(self) -> None:
        """Nothing to send: the policy is the trained actor itself."""

    def shutdown(self) -> None:
        pass

"""TorchRL's collector made resumable: its state holds what continuing its episodes needs."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torchrl.collectors import Collector


class ContinuingCollector(Collector):
    """TorchRL's Collector whose state_dict holds what continuing its episodes needs: the
    env's state (TrainingCopies.save_state: the simulators, their generators, the pending
    observations and step counts) and torch's generator of the process it runs in (in a
    MultiSyncCollector worker, the one its policy samples from). Loading it puts the env
    back and hands the collector's carrier the restored observations, so the next batch
    continues the saved one's episodes. The policy's weights are not in it: they come from
    the trainer (update_policy_weights_)."""

    def state_dict(self) -> OrderedDict:
        return OrderedDict(
            copies=self.env.save_state(),
            torch_rng=torch.get_rng_state(),
            frames=self._frames,
            iter=self._iter,
        )

    def load_state_dict(self, state_dict, **kwargs) -> None:
        self.env.load_state(state_dict["copies"])
        torch.set_rng_state(state_dict["torch_rng"])
        self._carrier.update(self.env.current())
        self._frames, self._iter = int(state_dict["frames"]), int(state_dict["iter"])

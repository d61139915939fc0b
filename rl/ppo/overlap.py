"""ppo.overlap: the next batch collected in a collector process while the trainer learns
from this one, with the weights from before this update (one update staler than without
overlap), on a fixed schedule, so a run's numbers are still the same every time.

Batch 1 and batch 2 are collected by the initial weights, batch k >= 2 by the weights
after update k - 2: the request for batch k + 1 goes out, with the trainer's weights of
that moment, as soon as batch k arrives and before it is learned from. PPO's importance
ratio is to the policy that acted (the batch's log-probabilities are that policy's), so the
clipped objective stays correct for the staler data; GAE uses the current critic.

A checkpoint waits for the batch in flight and keeps it with the collector's state (its
envs continue after that batch): a resumed run learns from it next and requests the one
after with the same weights as the uninterrupted run did.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections import OrderedDict

import torch
from tensordict import TensorDict

from rl.ppo.continuing import ContinuingCollector
from rl.ppo.envs import make_run_env


def _serve(conn, cfg: dict, seed: int, obs_stats: dict, actor_bytes: bytes) -> None:
    """The collector process: a ContinuingCollector over its own training env (seeded as
    the trainer's would be), collecting one batch per request with the weights it carries.
    The actor and every message come as pickled bytes, copies: a tensor handed to a process
    otherwise shares the trainer's memory, and the update would change the weights
    mid-batch."""
    actor = pickle.loads(actor_bytes)
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    collector = ContinuingCollector(
        make_run_env(cfg, seed, obs_stats),
        actor,
        frames_per_batch=cfg["ppo"]["frames_per_batch"],
        total_frames=-1,
        auto_register_policy_transforms=False,
        track_traj_ids=False,
    )
    batches = iter(collector)
    while True:
        command, arg = pickle.loads(conn.recv_bytes())
        if command == "collect":
            actor.load_state_dict(arg)
            reply = next(batches)
        elif command == "state":
            reply = collector.state_dict()
        elif command == "load":
            reply = collector.load_state_dict(arg)
        else:  # close
            collector.shutdown()
            conn.send_bytes(pickle.dumps(None))
            return
        conn.send_bytes(pickle.dumps(reply))


class OverlappedCollection:
    """The run's collection with ppo.overlap (see the module): the interface of
    rl.ppo.collect.Collection, one collector process from the first batch to the last."""

    def __init__(self, cfg: dict, seed: int, obs_stats: dict, actor, device: torch.device):
        self._actor, self._device = actor, device
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, cfg, seed, obs_stats, pickle.dumps(actor)), daemon=True
        )
        self._process.start()
        child.close()
        self._in_flight = False
        self._pending = None  # a batch received but not yet handed to the trainer

    def _call(self, command: str, arg=None):
        self._conn.send_bytes(pickle.dumps((command, arg)))
        return pickle.loads(self._conn.recv_bytes())

    def _request(self) -> None:
        weights = {k: v.detach().cpu().clone() for k, v in self._actor.state_dict().items()}
        self._conn.send_bytes(pickle.dumps(("collect", weights)))
        self._in_flight = True

    def _receive(self):
        if self._pending is None:
            self._pending = pickle.loads(self._conn.recv_bytes())
            self._in_flight = False
        batch, self._pending = self._pending, None
        return batch

    def batches(self, count: int):
        if count > 0 and self._pending is None and not self._in_flight:
            self._request()
        for k in range(count):
            batch = self._receive()
            if k + 1 < count:
                self._request()  # collected while this batch is learned from
            yield batch.to(self._device)

    def update_policy_weights_(self) -> None:
        """Nothing: each request carries the trainer's weights of its moment."""

    def state_dict(self) -> OrderedDict:
        if self._in_flight:
            self._pending = pickle.loads(self._conn.recv_bytes())
            self._in_flight = False
        # the batch as plain tensors: checkpoints are read with weights_only
        pending = None
        if self._pending is not None:
            pending = {"data": self._pending.to_dict(), "size": list(self._pending.batch_size)}
        return OrderedDict(collector=self._call("state"), pending=pending)

    def load_state_dict(self, state_dict) -> None:
        self._call("load", state_dict["collector"])
        pending = state_dict["pending"]
        if pending is not None:
            pending = TensorDict(pending["data"], batch_size=pending["size"])
        self._pending = pending

    def shutdown(self) -> None:
        if self._process.is_alive():
            if self._in_flight:
                self._conn.recv_bytes()
            self._call("close")
            self._process.join(timeout=10)
        self._conn.close()

"""The PPO loop on a gymnasium MuJoCo task, with TorchRL primitives: collector, GAE,
ClipPPOLoss, an on-policy replay buffer, Adam with an optional cosine schedule, gradient
clipping.

`train` is the loop, top to bottom: collect a batch, compute advantages and update, record
the batch, evaluate when due, checkpoint when due (rl.ppo.due says when). Everything the
loop needs to continue is in `Run` (its modules, optimiser, schedule and collection: the
training envs' simulators, generators and pending observations) and `Run.state` (counters
and metric rows), saved as one `Checkpoint`, so a run resumed from any checkpoint it wrote,
on the frames or the minutes trigger, continues the very episodes it was collecting and
ends as the uninterrupted run, bit for bit.

One loop for every backend and device. A batch reads nothing on the host: its metrics stay
on the device (rl.ppo.update.batch_metrics) and are copied in one go when the loop reports:
on CUDA once per progress.log_interval_seconds and before every evaluation and checkpoint,
so the batches of a log interval run back to back; on the CPU after every batch. What
differs is configuration: env.backend mujoco-warp collects with
rl.ppo.resident.DeviceRollout (no host round trip per step) and its optimiser's lr is a
tensor; with ppo.compile its policy and whole minibatch step are compiled, and CUDA-graphed
on a GPU.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tensordict import TensorDict
from torchrl.envs import EnvBase
from torchrl.objectives.value import GAE

from rl.core.checkpoint import Checkpoint, TrainingDiverged
from rl.core.config import PPO_SECTIONS, config_hash
from rl.core.device import resolve_device
from rl.core.progress import Progress
from rl.core.snapshots import Snapshots
from rl.ppo.collect import Collection, make_collection
from rl.ppo.due import Due
from rl.ppo.envs import make_eval_env, make_run_env
from rl.ppo.evaluate import evaluate_episode
from rl.ppo.models import make_actor_critic
from rl.ppo.resident import DeviceRollout
from rl.ppo.update import METRICS, batch_metrics, make_advantage, make_loss, make_step, update

log = logging.getLogger("rl")

TIMING_COLUMNS = ("frames_per_s", "wall_s")

# Bumped when the loop's state layout or its numbers change (optimiser parameter order,
# the training env: 3 = TrainingCopies, 4 = one collector whose episodes continue across
# segments): a checkpoint written by an older loop is then refused with the "other
# settings" error.
LOOP_VERSION = 4
# The device-resident loop of env.backend mujoco-warp, versioned apart: its first version
# replaced TorchRL's collector there (other numbers), and a warp checkpoint of the older loop
# is refused, while the gymnasium backend's settings, and their hash, stay as they were.
RESIDENT_LOOP_VERSION = 2  # 2: the worlds' episodes continue across segments
# The overlapped loop of ppo.overlap (rl/ppo/overlap.py: batches one update staler),
# versioned apart for the same reason.
OVERLAP_LOOP_VERSION = 1


def is_resident(cfg: dict) -> bool:
    """Whether the run trains on the device-resident loop (env.backend mujoco-warp)."""
    return cfg["env"]["backend"] == "mujoco-warp"


def training_settings(cfg: dict) -> dict:
    """What a PPO run's numbers depend on: its config sections and the loop's version (a
    checkpoint must match them). Not the checkpoint intervals: where checkpoints fall
    changes no number, so changing them keeps a checkpoint usable."""
    settings = {k: cfg[k] for k in PPO_SECTIONS}
    settings["ppo"] = {k: v for k, v in cfg["ppo"].items() if not k.startswith("checkpoint_")}
    # mujoco-batch gives the gymnasium backend's numbers at any thread count: a checkpoint
    # of either continues on the other
    settings["env"] = {k: v for k, v in cfg["env"].items() if k != "threads"}
    if settings["env"]["backend"] == "mujoco-batch":
        settings["env"]["backend"] = "gymnasium"
    settings["loop_version"] = LOOP_VERSION
    if is_resident(cfg):
        settings["resident_loop_version"] = RESIDENT_LOOP_VERSION
    if cfg["ppo"]["overlap"]:
        settings["overlap_loop_version"] = OVERLAP_LOOP_VERSION
    return settings


def build(cfg: dict, seed: int, obs_stats: dict, device: torch.device):
    """The training env and the actor and critic sized for it."""
    env = make_run_env(cfg, seed, obs_stats, device=device)
    obs_dim = env.observation_spec["observation"].shape[-1]
    actor, critic = make_actor_critic(cfg["ppo"], obs_dim, env.action_spec, device)
    return env, actor, critic


@dataclass
class Run:
    """One seed's training: what the loop steps, and its resumable state."""

    cfg: dict
    device: torch.device
    env: EnvBase
    eval_env: EnvBase
    eval_seed: int
    actor: torch.nn.Module
    critic: torch.nn.Module
    advantage: GAE
    params: list[torch.nn.Parameter]
    optim: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    ckpt: Checkpoint
    state: dict
    collection: Collection | DeviceRollout | None = None  # made once the run exists
    step: Callable[[TensorDict], TensorDict] | None = None  # made after the restore
    snapshots: Snapshots | None = None

    @property
    def modules(self) -> dict:
        """What a checkpoint holds besides the loop state (by state_dict)."""
        return {
            "actor": self.actor,
            "critic": self.critic,
            "optim": self.optim,
            "sched": self.sched,
            "collection": self.collection,
        }

    @property
    def generators(self) -> dict:
        """Generators a checkpoint holds besides torch's CPU one: the device-resident loop on
        CUDA draws its actions and minibatches from the GPU's."""
        if is_resident(self.cfg) and self.device.type == "cuda":
            return {"cuda_rng": torch.cuda.default_generators[self.device.index or 0]}
        return {}

    def checkpoint(self) -> None:
        self.state["checkpointed"] = self.state["frames"]
        self.ckpt.save(f"frame {self.state['frames']}", self.state, self.modules, self.generators)

    @contextlib.contextmanager
    def closing(self):
        """The collection (its worker processes) and the envs closed on the way out."""
        try:
            yield self
        finally:
            if self.collection is not None:
                self.collection.shutdown()
            self.env.close()
            self.eval_env.close()

    def result(self) -> dict:
        """What `train` returns: the loop state, the modules, the device, the checkpoint."""
        modules = {"actor": self.actor, "critic": self.critic}
        modules |= {"optim": self.optim, "sched": self.sched}
        return {"state": self.state, **modules, "device": self.device, "checkpoint": self.ckpt.path}


def _schedule(optim, ppo: dict):
    if ppo["anneal_lr"]:
        n_batches = ppo["total_frames"] // ppo["frames_per_batch"]
        return torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=n_batches, eta_min=0.0)
    return torch.optim.lr_scheduler.ConstantLR(optim, factor=1.0, total_iters=0)


def setup(cfg: dict, seed: int, obs_stats: dict, out_dir: str | Path) -> Run:
    """Build the run (seeded), its collection included, and restore its checkpoint when
    there is one; `run.collection.shutdown()` when done."""
    ppo = cfg["ppo"]
    device = resolve_device(cfg["device"])
    torch.manual_seed(seed)
    env, actor, critic = build(cfg, seed, obs_stats, device)
    eval_seed = seed + 2 * cfg["evaluation"]["seed_offset"]
    # reseeded before each evaluation; gymnasium's MuJoCo whatever the training backend:
    # a policy trained on mujoco-warp is judged on the reference physics
    eval_env = make_eval_env(cfg["env"], eval_seed, obs_stats=obs_stats, device=device)
    loss_module = make_loss(actor, critic, ppo)
    # fused: one kernel for all parameters instead of a loop of small ops (CPU and CUDA);
    # resident: the lr a tensor on the device that the schedule updates in place, as a
    # graphed Adam step reads it there (a float would be frozen into the graph), and on
    # CUDA an Adam that may be captured in a CUDA graph
    params = list(loss_module.parameters())
    graph = is_resident(cfg) and ppo["compile"]
    lr = torch.tensor(ppo["lr"], device=device) if is_resident(cfg) else ppo["lr"]
    capturable = graph and device.type == "cuda"
    optim = torch.optim.Adam(params, lr=lr, fused=True, capturable=capturable)
    sched = _schedule(optim, ppo)
    settings = config_hash(training_settings(cfg))
    ckpt = Checkpoint(Path(out_dir) / "checkpoint.pt", settings, "PPO")
    state = {"frames": 0, "batches": 0, "metrics": [], "eval": [], "wall_s": 0.0}
    state |= {"settings": settings, "checkpointed": None}
    advantage = make_advantage(critic, ppo, device)
    run = Run(
        cfg=cfg,
        device=device,
        env=env,
        eval_env=eval_env,
        eval_seed=eval_seed,
        actor=actor,
        critic=critic,
        advantage=advantage,
        params=params,
        optim=optim,
        sched=sched,
        ckpt=ckpt,
        state=state,
    )
    run.collection = make_collection(cfg, seed, obs_stats, env, actor, device)
    try:
        _restore(run)
    except BaseException:
        run.collection.shutdown()
        raise
    # made after the restore: a graphed step keeps the tensors it was captured with
    run.step = make_step(loss_module, optim, params, ppo, graph=graph, device=device)
    return run


def _restore(run: Run) -> None:
    resumed = run.ckpt.restore(run.modules, run.generators)
    if resumed is None:
        return
    run.state = resumed
    if is_resident(run.cfg):  # the checkpoint loads on the CPU; the lr lives on the device
        for group in run.optim.param_groups:
            group["lr"] = torch.as_tensor(group["lr"], dtype=torch.float32, device=run.device)
    log.info("resuming from checkpoint %s at frame %d", run.ckpt.path, resumed["frames"])


@dataclass
class Batch:
    """A batch the loop has trained on but not reported yet: the frames done after it, its
    number, its size in frames, its seconds on the host and its metrics (METRICS order),
    still on the device."""

    frames: int
    number: int
    size: int
    seconds: float
    metrics: torch.Tensor


def train(
    cfg: dict,
    seed: int,
    obs_stats: dict,
    out_dir: str | Path,
    on_batch=None,
    snapshot_every: int | None = None,
    batch_guard=None,
) -> dict:
    """Train one seed; returns the loop state, the modules and the device.

    `on_batch(row, eval_row_or_None)` is called for every batch's row as the loop reports
    it (live MLflow logging); `batch_guard`: a context manager factory entered around each
    batch's collection and update (tests: no host read there). With `snapshot_every`
    (frames, a multiple of frames_per_batch), `state['snapshots']` holds a copy of the actor
    at 0 and every that many frames (rl.core.snapshots); taking them changes no number.

    Resumable: a checkpoint of everything the loop needs (the collection's state included:
    its episodes run on) falls at every multiple of `checkpoint_interval_frames` and every
    `checkpoint_interval_minutes`; a run resumed from any of them ends as the uninterrupted
    run, bit for bit. A checkpoint of other settings is refused.
    """
    run = setup(cfg, seed, obs_stats, out_dir)
    ppo, state, collection = cfg["ppo"], run.state, run.collection
    guard = batch_guard or contextlib.nullcontext
    interval = cfg["progress"]["log_interval_seconds"]
    progress = Progress(ppo["total_frames"], "frames", interval, state["frames"])
    with run.closing(), contextlib.closing(progress):
        with run.ckpt.on_interrupt(lambda: f"frame {state['frames']}"):
            _start(run, on_batch, snapshot_every)
            # on a GPU the batches of a log interval run back to back; on the CPU each is
            # reported as it ends (a diverged run stops at once)
            due = Due(ppo, state["frames"], interval if run.device.type == "cuda" else 0.0)
            left = (ppo["total_frames"] - state["frames"]) // ppo["frames_per_batch"]
            batches = collection.batches(left)
            pending: list[Batch] = []  # trained on, their metrics still on the device
            started = time.perf_counter()
            while state["frames"] < ppo["total_frames"]:
                with guard():  # one batch: its collection and update
                    data = next(batches)
                    metrics = learn(run, data)
                    collection.update_policy_weights_()
                size, ended = data.numel(), time.perf_counter()
                state["frames"] += size
                state["batches"] += 1
                pending.append(
                    Batch(state["frames"], state["batches"], size, ended - started, metrics)
                )
                evaluating = due.evaluation(state["frames"])
                checkpointing = due.checkpoint(state["frames"])
                if evaluating or checkpointing or _snapshot_due(run) or due.report():
                    rows = report(run, pending, ended)
                    due.reported()
                    snapshot(run)  # after the report: the loop's seconds are the batch's
                    eval_row = None
                    if evaluating:
                        eval_row = evaluate(run)
                        due.evaluated()
                    _publish(rows, eval_row, on_batch, progress)
                if checkpointing:
                    run.checkpoint()
                    due.checkpointed(state["frames"])
                started = time.perf_counter()  # evaluations and checkpoints are not throughput
    return run.result()


def _start(run: Run, on_batch, snapshot_every: int | None) -> None:
    """Before the first batch: the snapshots kept (the one at 0 taken), and the rows of a
    resumed run passed to `on_batch` again (a killed process may not have logged them)."""
    state = run.state
    if snapshot_every:
        run.snapshots = Snapshots(snapshot_every, state.setdefault("snapshots", []))
        snapshot(run)
    if on_batch is not None:
        evals = {e["frames"]: e for e in state["eval"]}
        for row in state["metrics"]:
            on_batch(row, evals.get(row["frames"]))


def learn(run: Run, data: TensorDict) -> torch.Tensor:
    """GAE and the PPO epochs on one batch, then the schedule's step; the batch's metrics,
    on the device."""
    losses = update(data, run.advantage, run.step, run.cfg["ppo"])
    metrics = batch_metrics(data, losses, run.optim.param_groups[0]["lr"])  # this batch's lr
    run.sched.step()
    return metrics


def report(run: Run, pending: list[Batch], since: float) -> list[dict]:
    """Copy the metrics of the batches not yet reported to the host (one transfer) and
    commit their rows; the wait for the device since `since` (the end of the last batch on
    the host) counts in the last batch's seconds. Empties `pending`."""
    values = torch.stack([b.metrics for b in pending]).tolist()
    pending[-1].seconds += time.perf_counter() - since
    rows = []
    for batch, vector in zip(pending, values, strict=True):
        m = dict(zip(METRICS, vector, strict=True))
        row = {"frames": batch.frames, "batch": batch.number, **m}
        row["train_reward_mean"] = m["train_reward_mean"] / run.cfg["ppo"]["reward_scale"]
        row["train_max_episode_length"] = int(m["train_max_episode_length"])
        wall_s = run.state["wall_s"] + batch.seconds
        row |= {"frames_per_s": batch.size / batch.seconds, "wall_s": wall_s}
        record(run, row, batch.frames - batch.size)
        rows.append(row)
    pending.clear()
    return rows


def _kept(run: Run) -> str:
    at = run.state.get("checkpointed")
    if at is None:
        return "No checkpoint was written yet."
    return f"The last good checkpoint ({run.ckpt.path}, frame {at}) is kept."


def record(run: Run, row: dict, start: int) -> None:
    """Commit a batch's row to the loop state; a non-finite loss or gradient stops the run
    (`start`: the frames done before that batch)."""
    if not all(map(math.isfinite, (row["loss_objective"], row["loss_critic"], row["grad_norm"]))):
        raise TrainingDiverged(
            f"Training diverged at frame {start}: non-finite loss or "
            f"gradient (loss_objective={row['loss_objective']}, "
            f"loss_critic={row['loss_critic']}, grad_norm={row['grad_norm']}). "
            f"{_kept(run)} Resuming under the same settings would diverge again (the run is "
            f"deterministic): lower ppo.lr or ppo.max_grad_norm, or check the observation "
            f"statistics, and rerun (a checkpoint of the old settings is refused: delete it)."
        )
    run.state["wall_s"] = row["wall_s"]
    run.state["metrics"].append(row)


def _snapshot_due(run: Run) -> bool:
    return run.snapshots is not None and run.snapshots.due(run.state["frames"])


def snapshot(run: Run) -> None:
    """A copy of the actor when one is due at the frames done (rl.core.snapshots)."""
    state, ppo = run.state, run.cfg["ppo"]
    if _snapshot_due(run):
        per_batch = ppo["num_epochs"] * (ppo["frames_per_batch"] // ppo["minibatch_size"])
        run.snapshots.take(
            run.actor, state["frames"], state["batches"] * per_batch, state["wall_s"]
        )


def evaluate(run: Run) -> dict:
    """One deterministic episode on the evaluation env, seeded by the frames done."""
    frames = run.state["frames"]
    run.eval_env.set_seed(run.eval_seed + frames)
    ret, length = evaluate_episode(run.eval_env, run.actor, run.cfg["env"]["max_episode_steps"])
    row = {"frames": frames, "eval_return": ret, "eval_episode_length": length}
    run.state["eval"].append(row)
    return row


def _publish(rows: list[dict], eval_row: dict | None, on_batch, progress: Progress) -> None:
    """The reported rows to `on_batch` (the evaluation with the last) and the progress line."""
    for row in rows if on_batch is not None else ():
        on_batch(row, eval_row if row is rows[-1] else None)
    shown = {"eval_return": eval_row["eval_return"]} if eval_row else {}
    progress.update(rows[-1]["frames"], reward=rows[-1]["train_reward_mean"], **shown)

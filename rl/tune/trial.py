"""One trial of the search: the base config with the sampled values, trained by the
project's PPO loop (`rl.ppo.train.train`) on the trial's own seed until its deterministic
evaluation first reaches the threshold, with its MLflow run, tables and provenance.

The objective is simulator frames, not seconds: it does not depend on what else runs on
the machine. A trial that never reaches the threshold scores its budget times one plus its
shortfall (as a fraction of the threshold), so the nearer misses rank first; after each
evaluation the trial reports that score as if it stopped there, for the pruner.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna
import pandas as pd

from rl.core import provenance, tuning
from rl.core.device import resolve_device
from rl.core.files import write_csv
from rl.tracking.run import StageRun
from rl.tune.configs import searched_config

log = logging.getLogger("rl")
STAGE = "tune_trial"


class Solved(Exception):
    """Raised from the loop's callback when an evaluation reaches the threshold."""

    def __init__(self, frames: int):
        super().__init__(f"threshold reached at frame {frames}")
        self.frames = frames


class TrialRun(StageRun):
    """A trial's MLflow run: a child of the study's parent, named after the trial."""

    @property
    def run_name(self) -> str:
        return f"tune-{self.variant}"


def distribution(item: dict) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of one searched key (its `tune.space` entry)."""
    if "choices" in item:
        return optuna.distributions.CategoricalDistribution(item["choices"])
    if item["integer"]:
        low, high = int(item["low"]), int(item["high"])
        return optuna.distributions.IntDistribution(low, high, log=item["log"])
    low, high = float(item["low"]), float(item["high"])
    return optuna.distributions.FloatDistribution(low, high, log=item["log"])


def suggest(trial: optuna.Trial, item: dict):
    """The trial's value of one searched key, drawn from its distribution."""
    key, dist = item["key"], distribution(item)
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, log=dist.log)


def score(best_return: float | None, budget: int, threshold: float) -> float:
    """The objective of a trial that has not reached the threshold (yet): its budget
    times one plus its shortfall as a fraction of the threshold."""
    best = 0.0 if best_return is None else best_return
    return budget * (1.0 + max(0.0, threshold - best) / abs(threshold))


def origin(trial: optuna.Trial) -> int:
    """The number of the trial this one retries (its own if none): its folder's name."""
    attrs = trial.study._storage.get_trial_system_attrs(trial._trial_id)
    return attrs.get("failed_trial", trial.number)  # RetryHeartbeatStaleTrialCallback's


class Objective:
    """`study.optimize`'s objective for one worker (a Job of `tune-worker`)."""

    def __init__(self, job, worker: str):
        self.job, self.worker = job, worker
        self.cfg, self.tune = job.cfg, job.cfg["tune"]
        self.results: list[dict] = []

    def __call__(self, trial: optuna.Trial) -> float:
        started = time.perf_counter()
        trial.set_user_attr("worker", self.worker)
        seed = trial.user_attrs.get("seed", self.tune["first_seed"] + trial.number)
        trial.set_user_attr("seed", seed)
        params = {item["key"]: suggest(trial, item) for item in self.tune["space"]}
        cfg = searched_config(self.cfg, params, f"trial {trial.number} of the search")
        log.info("trial %d (seed %d): %s", trial.number, seed, params)
        folder = tuning.files(self.cfg)["trials_dir"] / f"trial{origin(trial):04d}"
        outcome = self._train(trial, cfg, seed, folder)
        outcome["wall_s"] = time.perf_counter() - started
        # storage, MLflow and bookkeeping: everything but the training and its statistics
        outcome["overhead_s"] = outcome["wall_s"] - outcome.pop("useful_s")
        for key, value in outcome.items():
            trial.set_user_attr(key, value)
        self.results.append({"number": trial.number, **outcome})
        log.info("trial %d: %s", trial.number, outcome)
        if outcome["state"] == "pruned":
            raise optuna.TrialPruned(f"pruned at frame {outcome['frames_trained']}")
        return outcome["value"]

    def _train(self, trial: optuna.Trial, cfg: dict, seed: int, folder: Path) -> dict:
        from rl.ppo.stages import norm_stats
        from rl.ppo.train import train

        threshold, budget = self.tune["threshold"], cfg["ppo"]["total_frames"]
        rows, evals, name = [], [], f"trial{trial.number:04d}"
        device = str(resolve_device(cfg["device"]))
        prov = provenance.record(cfg, stage=STAGE, variant=name, device=device)
        marker, config_path = self.job.args.mlflow_marker, self.job.args.config
        with TrialRun(cfg, marker, STAGE, prov, None, name, config_path=config_path) as run:
            storage_s = 0.0  # the pruner's reports, inside the loop

            def on_batch(row, eval_row):
                nonlocal storage_s
                rows.append(row)
                run.log_metrics({k: v for k, v in row.items() if k != "batch"}, row["frames"])
                if eval_row is None:
                    return
                evals.append(eval_row)
                run.log_metrics(eval_row, eval_row["frames"])
                if eval_row["eval_return"] >= threshold:
                    raise Solved(eval_row["frames"])
                t0 = time.perf_counter()
                best = max(e["eval_return"] for e in evals)
                trial.report(score(best, budget, threshold), len(evals))
                prune = trial.should_prune()
                storage_s += time.perf_counter() - t0
                if prune:
                    raise optuna.TrialPruned()

            state, reached, t0 = "complete", None, time.perf_counter()
            logged_before = run.seconds
            try:
                stats = norm_stats(cfg, seed)
                train(cfg, seed, stats, folder, on_batch=on_batch)
            except Solved as solved:
                reached = solved.frames
            except optuna.TrialPruned:
                state = "pruned"
            useful_s = time.perf_counter() - t0 - storage_s - (run.seconds - logged_before)
            best = max((e["eval_return"] for e in evals), default=None)
            value = float(reached) if reached is not None else score(best, budget, threshold)
            outcome = {
                "state": state,
                "value": value,
                "reached": reached is not None,
                "frames_trained": rows[-1]["frames"] if rows else 0,
                "best_eval_return": best,
                "seed": seed,
                "useful_s": useful_s,
            }
            tag = {"trial": trial.number, "seed": seed}
            write_csv(folder / "train_metrics.csv", pd.DataFrame(rows).assign(**tag))
            write_csv(folder / "train_eval.csv", pd.DataFrame(evals).assign(**tag))
            (folder / "checkpoint.pt").unlink(missing_ok=True)
            record = {k: v for k, v in outcome.items() if k != "useful_s"}
            provenance.write(folder, cfg, stage=STAGE, variant=name, device=device, extra=record)
            run.log_metrics({"tune_objective": value}, outcome["frames_trained"])
            run.set_tags({"rl.tune.trial": trial.number, "rl.tune.state": state})
        return outcome

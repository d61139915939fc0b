"""What a rule runs: the stage registry and the skeleton every stage shares.

A `Stage` declares a verb once: its name (the Snakemake rule, the MLflow stage and the
provenance record's `stage` are all this name; the verb is it with dashes), its arguments,
the files of its output folder that MLflow keeps, and how `mlflow-sync` reads its metric
rows back. `rl/cli.py` builds the command line from the registry, `mlflow-sync` reads
it, and a stage's function receives a `Job`: the validated config of the run (the
variant's, with `--set` overrides), its seed and variant, and the two steps every stage
ends with, writing the provenance record and logging to MLflow.

Imports neither torch nor mlflow: `python -m rl --help` and the Snakefile stay fast.
"""

from __future__ import annotations

import argparse
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rl.core import config as config_mod
from rl.core import layout, provenance, tuning

PER_SEED, STUDY, TOOL = "per-seed", "study", "tool"


@dataclass(frozen=True)
class Arg:
    """One argparse argument: `Arg("--out", required=True, help=...)`."""

    flags: tuple[str, ...]
    options: dict

    def __init__(self, *flags: str, **options):
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "options", options)


@dataclass(frozen=True)
class Stage:
    """A verb of `python -m rl`.

    kind: PER_SEED (--config, --seed, --variant, --threads, --mlflow-marker), STUDY
    (--config, --threads, --mlflow-marker) or TOOL (its own arguments only, untracked).
    artifacts: glob patterns of the output folder's files logged as MLflow artifacts.
    rows(folder) -> [(step, metrics)]: the metric rows its files hold, for mlflow-sync.
    on_sync(run, cfg, folder, variant, seed): more for mlflow-sync to log (e.g. a model).
    parents(folder) -> ({(variant, seed): metrics}, study metrics): the headline numbers its
    files hold for the parent runs, logged by the job and by mlflow-sync alike.
    """

    name: str
    help: str
    func: Callable
    kind: str = PER_SEED
    args: tuple[Arg, ...] = ()
    artifacts: tuple[str, ...] = ("provenance.json",)
    rows: Callable[[Path], list] | None = None
    on_sync: Callable | None = None
    parents: Callable[[Path], tuple[dict, dict]] | None = None

    @property
    def verb(self) -> str:
        return self.name.replace("_", "-")

    def artifact_files(self, folder: str | Path) -> list[Path]:
        """The files of `folder` that this stage's MLflow run keeps."""
        files = sorted(
            p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")
        )
        return [p for p in files if any(fnmatch.fnmatch(p.name, a) for a in self.artifacts)]


def stage(name: str, help: str, *args: Arg, kind: str = PER_SEED, **declared) -> Callable:
    """Decorator: `@stage("train_ppo", "...", Arg(...), artifacts=(...))` on `func(job)`.
    The module lists its stages in STAGES."""

    def register(func: Callable) -> Stage:
        return Stage(name, help, func, kind, args, **declared)

    return register


def add_parser(sub, st: Stage) -> argparse.ArgumentParser:
    """The stage's sub-command, with the arguments its kind implies."""
    p = sub.add_parser(st.verb, help=st.help, description=st.help)
    if st.kind in (PER_SEED, STUDY):
        p.add_argument("--config", required=True, help="study YAML (validated, defaults filled)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override one config value (YAML syntax; repeatable), e.g. ppo.lr=1e-4",
        )
    if st.kind == PER_SEED:
        p.add_argument("--seed", type=int, required=True, help="one of the config's seeds")
        p.add_argument("--variant", default=layout.DEFAULT_VARIANT, help="variant name")
    if st.kind in (PER_SEED, STUDY):
        p.add_argument("--threads", type=int, default=None, help="torch threads")
        p.add_argument("--mlflow-marker", help="MLflow marker from mlflow-init (omit: untracked)")
    for a in st.args:
        p.add_argument(*a.flags, **a.options)
    p.set_defaults(stage=st)
    return p


def load_config(args) -> dict:
    """The validated config of a verb: the file, `--set` overrides, then the variant's."""
    cfg = config_mod.load(args.config, getattr(args, "set", None) or ())
    # By hand as by the workflow: never write into a study made by a different config.
    config_mod.check_same_study(cfg, layout.outputs(cfg)["config"])
    if getattr(args, "variant", None) == tuning.WINNER and "tune" in cfg:
        from rl.tune.configs import winner_config

        cfg = winner_config(cfg)  # the search's best trial, once it has one
    elif getattr(args, "variant", None) is not None:
        cfg = config_mod.variant_config(cfg, args.variant, source=args.config)
    if getattr(args, "seed", None) is not None and args.seed not in cfg["seeds"]:
        raise config_mod.ConfigError(
            f"--seed {args.seed} is not among the config's seeds {cfg['seeds']} "
            f"({args.config}). Add it to the key 'seeds' or pick one of those."
        )
    return cfg


@dataclass
class Job:
    """One run of a stage: what its function works with and the steps it ends with."""

    stage: Stage
    args: argparse.Namespace
    cfg: dict | None  # None for a TOOL (it reads what it needs itself)
    stages: dict[str, Stage]
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def seed(self) -> int | None:
        return getattr(self.args, "seed", None)

    @property
    def variant(self) -> str:
        return getattr(self.args, "variant", None) or layout.DEFAULT_VARIANT

    def _identity(self) -> dict:
        seeded = self.stage.kind == PER_SEED
        return {
            "stage": self.stage.name,
            "started": self.started,
            **({"seed": self.seed, "variant": self.variant} if seeded else {}),
        }

    def record(self, **details) -> dict:
        """The provenance record of this job, not written (for a run opened early)."""
        return provenance.record(self.cfg, **self._identity(), **details)

    def write_provenance(self, folder: str | Path, **details) -> dict:
        """Write provenance.json into `folder` (after its outputs) and return it."""
        return provenance.write(folder, self.cfg, **self._identity(), **details)

    @contextmanager
    def tracked(self, prov: dict) -> Iterator:
        """The stage's MLflow run (a StageRun; untracked without --mlflow-marker)."""
        from rl.tracking.run import StageRun

        with StageRun(
            self.cfg,
            self.args.mlflow_marker,
            self.stage.name,
            prov,
            self.seed,
            self.variant,
            config_path=self.args.config,
        ) as run:
            yield run

    def finish(self, folder: str | Path, rows: Iterable = (), **details) -> dict:
        """Write the folder's provenance, then log `rows` ((step, metrics) pairs) and the
        stage's artifacts to MLflow. Returns the provenance record."""
        prov = self.write_provenance(folder, **details)
        with self.tracked(prov) as run:
            for step, row in rows:
                run.log_metrics(row, step)
            run.log_artifacts(self.stage.artifact_files(folder))
            if self.stage.parents is not None:
                run.log_parents(*self.stage.parents(Path(folder)))
        return prov


def run(st: Stage, args: argparse.Namespace, stages: dict[str, Stage]) -> None:
    """Run a parsed verb: its Job, with the validated config unless it is a TOOL."""
    cfg = None if st.kind == TOOL else load_config(args)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    st.func(Job(st, args, cfg, stages))

# The only logic of the workflow: config validation, paths, provenance environment.
import importlib.util
import os
from pathlib import Path
import shlex
import subprocess
import sys

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

# RL: the interpreter of every rule's `python -m rl <verb>`. In the training image
# (--use-apptainer, --use-singularity, --sdm apptainer) the image's `python`. Otherwise the
# interpreter this workflow was started with (.venv/bin/snakemake: the venv's, whatever is
# first on PATH), checked now for the package's runtime dependencies: a wrong one fails
# here with one paragraph, not in the first job with a traceback. find_spec imports nothing
# (no torch, no mlflow: the parse stays fast). A rule's shell starts with the f-string part
# f"{RL} -m rl <verb>" (filled in now; `snakemake --lint` flags a global in `{...}` of a
# shell command) and goes on in plain strings, formatted per job.
RUNTIME_MODULES = ("torch", "torchrl", "tensordict", "gymnasium", "mujoco", "mlflow")
_deployment = getattr(workflow, "deployment_settings", None)
IN_CONTAINER = (
    _deployment is not None and DeploymentMethod.APPTAINER in _deployment.deployment_method
)


def _importable(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


if IN_CONTAINER:
    RL = "python"
else:
    RL = shlex.quote(sys.executable)
    _missing = [m for m in RUNTIME_MODULES if not _importable(m)]
    if _missing:
        raise WorkflowError(
            f"The rules run `python -m rl` with the interpreter this workflow was started "
            f"with, {sys.executable}, and it cannot import {', '.join(_missing)} (runtime "
            f"dependencies of the rl package): this snakemake is not the project's. Start "
            f"the project's snakemake instead: `source .venv/bin/activate` and run your "
            f"command again, or call `.venv/bin/snakemake ...`, or `make run` (it makes the "
            f"venv and uses it); or install the package into this interpreter with "
            f"`{RL} -m pip install -e .`; or run every rule in the training image with "
            f"--use-apptainer."
        )

sys.path.insert(0, workflow.basedir)
from rl.core import config as rl_config  # noqa: E402  (yaml + jsonschema only: fast parse)
from rl.core import layout  # noqa: E402
from rl.core import tuning  # noqa: E402
from rl.tune.configs import winner_config  # noqa: E402

DEFAULT_CONFIG = os.path.join(workflow.basedir, "configs", "default.yaml")
if "study" not in config:  # no --configfile: the embedded default study (+ any --config)
    import yaml
    from snakemake.utils import update_config

    with open(DEFAULT_CONFIG) as _f:
        _default = yaml.safe_load(_f)
    update_config(_default, config)
    config.clear()
    config.update(_default)

# Our validator first: its one-paragraph message names the key and the fix. Snakemake's
# own validation against the same schema then runs on the resolved config.
try:
    config = rl_config.validate(config, source="the workflow config")
except rl_config.ConfigError as exc:
    raise WorkflowError(str(exc)) from None
validate(config, "../schemas/config.schema.yaml", set_default=True)

OUT = layout.outputs(config)
SEEDS = config["seeds"]
# variant x seed fan-out; a study without `variants:` has the one variant `default`
VARIANTS = rl_config.variant_names(config)
VARIANTS_OF = {s: rl_config.variant_names(config, s) for s in ("ppo", "pendulum")}
# A tuning study (a `tune:` section) trains the search's winner too, as the PPO variant
# `winner`; its config exists once the tune_report checkpoint has written best.yaml.
TUNE = "tune" in config
if TUNE:
    VARIANTS = [*VARIANTS, tuning.WINNER]
    VARIANTS_OF["ppo"] = [*VARIANTS_OF["ppo"], tuning.WINNER]


class _VariantConfigs(dict):
    """Each variant's resolved config; the winner's read from best.yaml when asked (its
    jobs exist only after the checkpoint)."""

    def __missing__(self, name):
        if TUNE and name == tuning.WINNER:
            checkpoints.tune_report.get()  # not run yet: Snakemake waits for it
            return winner_config(config)
        raise KeyError(name)


VARIANT_CONFIGS = _VariantConfigs(
    {v: rl_config.variant_config(config, v) for v in rl_config.variant_names(config)}
)
STUDY_DIR = str(layout.study_dir(config))
RESOLVED_CONFIG = OUT["config"]
MLFLOW_MARKER = OUT["mlflow_marker"] if config["mlflow"]["enabled"] else []
MARKER_ARG = f"--mlflow-marker {OUT['mlflow_marker']}" if config["mlflow"]["enabled"] else ""


wildcard_constraints:
    seed=r"\d+",
    variant=r"[A-Za-z0-9_.-]+",


def _git(*args):
    try:
        return subprocess.run(
            ["git", "-C", workflow.basedir, *args], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# Provenance reaches jobs through the environment, not params: a new commit must not
# rerun the study.
os.environ.setdefault("RL_GIT_COMMIT", _git("rev-parse", "HEAD") or "unknown")
os.environ.setdefault(
    "RL_GIT_DIRTY", "1" if _git("status", "--porcelain", "--untracked-files=no") else "0"
)
# The study's identity is checked at parse time (read-only): a config that would mix into
# another study's results fails before anything runs, a dry run included.
try:
    rl_config.check_same_study(config, RESOLVED_CONFIG)
except rl_config.ConfigError as exc:
    raise WorkflowError(str(exc)) from None


def _unwritable(path):
    """Why `path` cannot be made and written, found without writing anything (a dry run
    writes nothing): a file where a folder must be, or a folder this user may not write."""
    for p in [path, *path.parents]:
        if os.path.lexists(p):
            if not os.path.isdir(p):
                return f"'{p}' is a file, not a folder"
            if not os.access(p, os.W_OK | os.X_OK):
                return f"this user may not write in '{p}'"
            return None
    return None


def _results_error(problem):
    return WorkflowError(
        f"Cannot write the study's resolved config {RESOLVED_CONFIG} ({problem}). The "
        f"results folder (config key results_dir='{config['results_dir']}') must be a "
        f"writable directory: fix its permissions, free space, or point results_dir at a "
        f"folder you own."
    )


_problem = _unwritable(Path(RESOLVED_CONFIG).parent)
if _problem:
    raise _results_error(_problem)


def write_resolved_config():
    """The resolved config (defaults filled), which every job reads. Written when the
    workflow starts to run, never at parse time, so a dry run, --lint or --dag writes
    nothing; rewritten only when it changed, so an unchanged study stays a no-op."""
    try:
        rl_config.write_resolved(RESOLVED_CONFIG, rl_config.dump(config))
    except OSError as exc:
        raise _results_error(f"{exc.strerror}: '{exc.filename}'") from None


onstart:
    write_resolved_config()


def per_seed(key):
    """Every (variant, seed) file of `key`, over the variants that run its study (the
    comparison's episodes: every variant)."""
    if key == "compare_episodes":
        return expand(OUT[key], variant=VARIANTS, seed=SEEDS)
    study = "pendulum" if key.startswith(("pendulum", "compare_gradients")) else "ppo"
    return expand(OUT[key], variant=VARIANTS_OF[study], seed=SEEDS)


def log_path(rule_name, per_seed_rule=True):
    name = "{variant}-seed{seed}.log" if per_seed_rule else "all.log"
    return os.path.join(OUT["logs"], rule_name, name)


VIDEO = config["video"]
# With on_error: skip a job may end without its episode videos, so only their manifest is
# declared then; otherwise every video is an output (tracked, and in the report).
DECLARE_VIDEOS = VIDEO["enabled"] and VIDEO["on_error"] == "fail"
EPISODE_VIDEOS = ["first", "worst"]


def eval_video_outputs():
    """evaluate_ppo's video outputs (none without video.enabled), for `output: **...`."""
    if not VIDEO["enabled"]:
        return {}
    outputs = {"videos": OUT["eval_videos"]}
    for episode in EPISODE_VIDEOS if DECLARE_VIDEOS else []:
        outputs[f"{episode}_mp4"] = report(
            OUT["eval_video_mp4"].replace("{episode}", episode),
            caption=f"../report/ppo_video_{episode}.rst",
            category="Videos",
            subcategory="PPO evaluation episodes",
            labels={"seed": "{seed}", "variant": "{variant}", "episode": episode},
        )
        outputs[f"{episode}_gif"] = OUT["eval_video_gif"].replace("{episode}", episode)
    return outputs


def video_targets():
    if not VIDEO["enabled"]:
        return []
    targets = [
        *per_seed("eval_videos"),
        *per_seed("pendulum_animation_mp4"),
        *per_seed("pendulum_animation_gif"),
    ]
    for episode in EPISODE_VIDEOS if DECLARE_VIDEOS else []:
        targets += expand(
            [OUT["eval_video_mp4"], OUT["eval_video_gif"]],
            variant=VARIANTS_OF["ppo"],
            seed=SEEDS,
            episode=episode,
        )
    return targets


def all_targets():
    ppo = ["fig_png", "fig_pdf", "fig_stats_png", "fig_stats_pdf", "agg_summary"]
    pendulum = ["fig_pendulum_png", "fig_pendulum_pdf", "agg_pendulum_summary"]
    keys = (ppo if VARIANTS_OF["ppo"] else []) + (pendulum if VARIANTS_OF["pendulum"] else [])
    if COMPARE:
        keys += ["fig_compare_png", "fig_compare_pdf", "fig_gradients_png", "fig_gradients_pdf"]
    return [OUT[k] for k in keys] + video_targets() + tune_targets()


# The comparison study (a `compare:` section): the training rules also write policy
# snapshots, which evaluate_snapshots scores and probe_gradients measures.
COMPARE = "compare" in config
COMPARE_SETTINGS = (
    rl_config.config_hash({k: config["compare"][k] for k in rl_config.COMPARE_KEYS})
    if COMPARE
    else ""
)


def snapshot_outputs(study):
    """A training rule's snapshots output in a comparison study (for `output: **...`)."""
    return {"snapshots": OUT[f"{study}_snapshots"]} if COMPARE else {}


def with_snapshots(settings):
    """A training rule's rerun trigger, with the snapshot interval in a comparison study
    (unchanged otherwise, so a finished study without one stays a no-op)."""
    if not COMPARE:
        return settings
    every = str(config["compare"]["snapshot_every"])
    return lambda wildcards: settings(wildcards) + every


def snapshots_of(wildcards):
    """The snapshots file of a variant: its PPO or its pendulum training's."""
    study = "ppo" if wildcards.variant in VARIANTS_OF["ppo"] else "pendulum"
    return OUT[f"{study}_snapshots"].format(variant=wildcards.variant, seed=wildcards.seed)


def settings_hash(*sections):
    """Rerun trigger: the hash of the config sections a rule's outputs depend on. For the
    sections a variant may override, a function of the job's {variant} wildcard (study-level
    rules get the base config's), so changing one variant reruns only its jobs."""
    if not set(sections) & set(rl_config.OVERRIDABLE):
        return rl_config.config_hash({s: config[s] for s in sections})

    def settings(wildcards):
        cfg = VARIANT_CONFIGS[wildcards.variant] if "variant" in wildcards.keys() else config
        return rl_config.config_hash({s: cfg[s] for s in sections})

    return settings


GPU_JOBS = 1 if config["device"] == "cuda" else 0


def compare_table(name, caption=None):
    """A table of aggregate_compare (marked for the report when it has a caption)."""
    path = os.path.join(OUT["agg_compare_dir"], f"{name}.csv")
    if caption is None:
        return path
    return report(path, caption=f"../report/{caption}.rst", category="Comparison")


# The tuning study's search (workflow/rules/tune.smk)
TUNE_FILES = tuning.files(config) if TUNE else {}


def winner_best(wildcards):
    """The variant `winner`'s jobs wait for the search's result (a checkpoint: the Snakefile
    is parsed before best.yaml exists)."""
    if TUNE and wildcards.variant == tuning.WINNER:
        return checkpoints.tune_report.get().output.best
    return []


def train_cores(variant):
    """A training job's cores (the winner's: the base config's until best.yaml exists,
    as a dry run prints the job before the search)."""
    if TUNE and variant == tuning.WINNER and not TUNE_FILES["best"].is_file():
        return rl_config.train_cores(config)
    return rl_config.train_cores(VARIANT_CONFIGS[variant])


def tune_targets():
    if not TUNE:
        return []
    return [TUNE_FILES["best"], TUNE_FILES["trials"], *tune_figures()]


def tune_figures():
    return [os.path.join(TUNE_FILES["figures"], f"search.{ext}") for ext in ("png", "pdf")]

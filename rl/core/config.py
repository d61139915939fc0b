"""Study configuration: load, validate against the shipped schema, fill defaults.

Imports neither torch nor mlflow, so the Snakefile can use it at parse time.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from rl.core.comparison import RESULT_KEYS as COMPARE_KEYS
from rl.core.comparison import check_compare
from rl.core.errors import ConfigError
from rl.core.overrides import apply_overrides
from rl.core.secrets import has_credentials
from rl.core.tasks import check_task
from rl.core.tuning import WINNER, check_tune

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


def load_schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key_of(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - allowed)
        unknown = ".".join(filter(None, [path, extra[0] if extra else ""]))
        return unknown or "<top level>"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return ".".join(filter(None, [path, missing[0] if missing else ""]))
    return path or "<top level>"


def validate(
    config: Mapping[str, Any], source: str = "the config", whole_study: bool = True
) -> dict:
    """Return a validated deep copy of `config` with every default filled in.

    Raises ConfigError naming the first offending key, then runs the cross-field
    checks that a JSON schema cannot express. `whole_study` False: `config` is one
    variant's (the study-wide checks of `compare:` are the whole study's to make).
    """
    resolved = copy.deepcopy(dict(config))
    errors = sorted(_Validator(load_schema()).iter_errors(resolved), key=lambda e: e.path)
    if errors:
        err = errors[0]
        key = _key_of(err)
        hint = _hint(err)
        raise ConfigError(
            f"Invalid config key '{key}' in {source}: {err.message}. {hint} "
            f"The accepted keys, types and defaults are in {SCHEMA_PATH.name} "
            f"(workflow/schemas/config.schema.yaml)."
        )
    check_semantics(resolved, source)
    if "tune" in resolved:
        check_tune(resolved, source)
    if "variants" in resolved:
        check_variants(resolved, source)
    if whole_study and "compare" in resolved:
        arms = {
            v["name"]: (v["studies"], variant_config(resolved, v["name"], source))
            for v in resolved.get("variants", [])
        }
        check_compare(resolved, arms, source)
    return resolved


# What a PPO run's numbers depend on: train_ppo's rerun trigger and its checkpoints' settings.
PPO_SECTIONS = ("env", "obs_norm", "ppo", "evaluation", "device")
# Sections a variant may override: the ones that decide the per-seed numbers. Study, seeds,
# results folder, tracking, aggregation and plotting are the study's, shared by its variants.
OVERRIDABLE = (*PPO_SECTIONS, "pendulum")


def _merge(base: dict, overrides: Mapping[str, Any]) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_variants(cfg: dict, source: str = "the config") -> None:
    """Unique names, overrides only of OVERRIDABLE sections, each resolved variant valid,
    and a comparison pair that names two PPO variants."""
    names = [v["name"] for v in cfg["variants"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"Invalid config key 'variants' in {source}: the variant name(s) {dupes} appear "
            f"more than once. Each variant needs its own name (it names its results folder)."
        )
    for variant in cfg["variants"]:
        bad = sorted(set(variant["overrides"]) - set(OVERRIDABLE))
        if bad:
            raise ConfigError(
                f"Invalid config key 'variants[{variant['name']}].overrides.{bad[0]}' in "
                f"{source}: a variant may override only {', '.join(OVERRIDABLE)}; "
                f"'{bad[0]}' belongs to the whole study (all variants share the study name, "
                f"seeds, results folder, tracking, aggregation and plot settings). Move it to "
                f"the top level of the config, or make a separate study."
            )
        variant_config(cfg, variant["name"], source)
    pair = cfg["aggregate"]["compare"]
    if pair is not None:
        ppo_names = variant_names(cfg, "ppo") + ([WINNER] if "tune" in cfg else [])
        unknown = [n for n in pair if n not in ppo_names]
        if unknown or pair[0] == pair[1]:
            why = (
                f"'{unknown[0]}' is not one of its PPO variants {ppo_names}"
                if unknown
                else "it compares a variant with itself"
            )
            raise ConfigError(
                f"Invalid config key 'aggregate.compare' in {source}: {why}. Name two "
                f"different variants whose studies include ppo, or null for the first two."
            )


def variant_names(cfg: Mapping[str, Any], study: str | None = None) -> list[str]:
    """The study's variants in config order (`default` when it declares none); with
    `study` ('ppo' or 'pendulum'), only the variants that run it."""
    from rl.core.layout import DEFAULT_VARIANT

    if not cfg.get("variants"):
        return [DEFAULT_VARIANT]
    return [
        v["name"]
        for v in cfg["variants"]
        if study is None or study in v.get("studies", ["ppo", "pendulum"])
    ]


def variant_config(cfg: Mapping[str, Any], name: str, source: str = "the config") -> dict:
    """The resolved config of one variant: the base config with the variant's overrides
    applied and validated, without the `variants` list. A study without variants has one,
    `default`, whose config is the study's own (so its hashes stay as they were)."""
    from rl.core.layout import DEFAULT_VARIANT

    if not cfg.get("variants"):
        if name != DEFAULT_VARIANT:
            raise ConfigError(
                f"Variant '{name}' is not in {source}: it declares no variants, so its only "
                f"variant is '{DEFAULT_VARIANT}'. Add a 'variants:' list or drop --variant."
            )
        return copy.deepcopy(dict(cfg))
    found = [v for v in cfg["variants"] if v["name"] == name]
    if not found:
        raise ConfigError(
            f"Variant '{name}' is not in {source}; its variants are "
            f"{variant_names(cfg)}. Pick one of those or add it under 'variants:'."
        )
    base = {k: v for k, v in cfg.items() if k != "variants"}
    merged = _merge(base, found[0]["overrides"])
    try:
        return validate(merged, source=f"variant '{name}' of {source}", whole_study=False)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc} (The key is resolved from the base config and the overrides of "
            f"variant '{name}'.)"
        ) from None


# Names other libraries use for our keys (difflib does not find these).
ALIASES = {
    "learning_rate": "lr",
    "lambda": "lmbda",
    "gae_lambda": "lmbda",
    "clip_range": "clip_epsilon",
    "clip_coef": "clip_epsilon",
    "n_envs": "num_envs",
    "batch_size": "frames_per_batch",
    "n_epochs": "num_epochs",
    "update_epochs": "num_epochs",
    "ent_coef": "entropy_coef",
    "vf_coef": "critic_coef",
    "seed": "seeds",
}


def _hint(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        names = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(names)) if isinstance(err.instance, dict) else []
        close = difflib.get_close_matches(extra[0], names, n=1) if extra else []
        if extra and not close and ALIASES.get(extra[0]) in names:
            close = [ALIASES[extra[0]]]
        maybe = f"Did you mean '{close[0]}'? " if close else ""
        return f"{maybe}Remove or rename it; allowed here: {', '.join(names)}."
    if err.validator == "required":
        return "Add it."
    if err.validator == "enum":
        return f"Use one of {err.validator_value}."
    if err.validator in {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}:
        return f"Choose a value within the bound ({err.validator} {err.validator_value})."
    if err.validator == "type":
        return f"Give a value of type {err.validator_value}."
    if err.validator == "minItems":
        return f"Give at least {err.validator_value} item(s)."
    if err.validator == "uniqueItems":
        return "Remove the duplicates."
    return "Fix the value."


def check_semantics(cfg: dict, source: str = "the config") -> None:
    """Cross-field constraints (the schema checks each field alone)."""
    ppo, env = cfg["ppo"], cfg["env"]

    def fail(key: str, why: str, fix: str) -> None:
        raise ConfigError(f"Invalid config key '{key}' in {source}: {why}. {fix}")

    if ppo["frames_per_batch"] % env["num_envs"]:
        fail(
            "ppo.frames_per_batch",
            f"{ppo['frames_per_batch']} frames per batch is not a multiple of "
            f"env.num_envs={env['num_envs']}",
            "Make frames_per_batch a multiple of num_envs.",
        )
    if env["num_envs"] % ppo["collector_workers"]:
        fail(
            "ppo.collector_workers",
            f"{ppo['collector_workers']} workers cannot share env.num_envs={env['num_envs']} "
            f"copies evenly",
            "Make env.num_envs a multiple of collector_workers.",
        )
    if ppo["total_frames"] % ppo["frames_per_batch"]:
        fail(
            "ppo.total_frames",
            f"{ppo['total_frames']} is not a multiple of ppo.frames_per_batch="
            f"{ppo['frames_per_batch']}",
            "Make total_frames a whole number of batches.",
        )
    if ppo["minibatch_size"] > ppo["frames_per_batch"]:
        fail(
            "ppo.minibatch_size",
            f"{ppo['minibatch_size']} is larger than ppo.frames_per_batch="
            f"{ppo['frames_per_batch']}",
            "Choose a minibatch no larger than the batch (a remainder is dropped each epoch).",
        )
    check_task(cfg, source)
    if ppo["overlap"] and (env["backend"] == "mujoco-warp" or ppo["collector_workers"] > 1):
        fail(
            "ppo.overlap",
            "overlapping collection and learning runs one collector process beside the "
            f"trainer, not env.backend {env['backend']} with {ppo['collector_workers']} "
            "collector workers",
            "Set ppo.collector_workers: 1 and env.backend gymnasium or mujoco-batch, or "
            "ppo.overlap: false.",
        )
    if env["backend"] == "mujoco-warp" and ppo["collector_workers"] > 1:
        fail(
            "ppo.collector_workers",
            f"{ppo['collector_workers']} workers with env.backend mujoco-warp, which steps all "
            f"its worlds at once on the run's device, in the training process",
            "Set ppo.collector_workers: 1 (more worlds, env.num_envs, is what scales it).",
        )
    uri = cfg["mlflow"]["tracking_uri"]
    if uri:
        if has_credentials(uri):
            fail(
                "mlflow.tracking_uri",
                "it holds credentials (user:password@ or a token in the query); configs and "
                "results are not the place for secrets",
                "Remove them from the URI and set MLFLOW_TRACKING_USERNAME/"
                "MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN in the environment instead.",
            )


def load(path: str | Path, overrides: list[str] = ()) -> dict:
    """Read a YAML config file, apply `section.key=value` overrides and validate it; errors
    name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"Config file '{path}' does not exist. Pass an existing YAML file, e.g. "
            f"configs/default.yaml or the resolved results/<study>/config.yaml."
        )
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"Config file '{path}' is not valid YAML{where}: {problem}. Fix the syntax there."
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"Config file '{path}' must hold a mapping of keys, not {type(raw).__name__}."
        )
    if overrides:
        raw = apply_overrides(raw, list(overrides))
        return validate(raw, source=f"{path} with --set {' '.join(overrides)}")
    return validate(raw, source=str(path))


def write_resolved(path: str | Path, text: str) -> None:
    """Write the resolved config only when it changed (an unchanged study stays a no-op)."""
    from rl.core.files import write_text

    path = Path(path)
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)


def train_cores(cfg: Mapping[str, Any]) -> int:
    """The cores a PPO training job reserves: one per collector process, times the physics
    threads of each with env.backend mujoco-batch, and the trainer's with ppo.overlap."""
    threads = cfg["env"]["threads"] if cfg["env"]["backend"] == "mujoco-batch" else 1
    # with ppo.overlap the collector process runs beside the trainer
    return cfg["ppo"]["collector_workers"] * threads + int(cfg["ppo"]["overlap"])


def config_hash(cfg: Mapping[str, Any]) -> str:
    """A short stable hash of the resolved config (key order does not matter)."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'ppo': {'lr': 1}} -> {'ppo.lr': 1}; lists are kept as their JSON text."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{name}."))
        elif isinstance(value, list):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def dump(cfg: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(cfg), sort_keys=False)


# Sections whose values decide the per-seed numbers. Changing any of them under an existing
# study would mix two configurations in one results folder; seeds, plotting, aggregation,
# tracking and progress settings may change freely (adding a seed is not mixing).


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Result-deciding keys whose values differ, per variant present in both configs
    (prefixed '<variant>:' when the study has variants). A variant only one of them has is
    new (or dropped), not a change: adding one to a finished study reruns only it."""
    olds = {n: _result_sections(old, n) for n in variant_names(old)}
    news = {n: _result_sections(new, n) for n in variant_names(new)}
    named = bool(old.get("variants") or new.get("variants"))
    out = []
    for name in [n for n in olds if n in news]:
        a, b = flatten(olds[name]), flatten(news[name])
        # keys the old config lacks are new schema keys (a newer version), not a change
        out += [f"{name}:{k}" if named else k for k in sorted(a) if a.get(k) != b.get(k)]
    return out


def _result_sections(cfg: Mapping[str, Any], variant: str) -> dict:
    if cfg.get("variants"):
        # the old resolved config was validated when written; merge without revalidating
        found = [v for v in cfg["variants"] if v["name"] == variant][0]
        cfg = _merge({k: v for k, v in cfg.items() if k != "variants"}, found["overrides"])
    sections = {k: cfg[k] for k in OVERRIDABLE if k in cfg}
    if "compare" in cfg:
        sections["compare"] = {k: v for k, v in cfg["compare"].items() if k in COMPARE_KEYS}
    return sections


def check_same_study(new: Mapping[str, Any], existing_path: str | Path) -> None:
    """Refuse to run a config into a results folder made by a different one."""
    existing_path = Path(existing_path)
    if not existing_path.is_file():
        return
    with open(existing_path) as f:
        old = yaml.safe_load(f) or {}
    diff = differing_keys(old, new)
    if diff:
        shown = ", ".join(diff[:8]) + (" ..." if len(diff) > 8 else "")
        raise ConfigError(
            f"Study '{new['study']}' already has results made with a different config "
            f"(keys that differ: {shown}; the old resolved config is {existing_path}). "
            f"Mixing them in one results folder would make its numbers untraceable. Give "
            f"this config a new 'study' name, or move/delete {existing_path.parent} to "
            f"start the study over. Adding seeds or variants, or changing plot/aggregate "
            f"settings, is fine."
        )

"""A tuning study's settings (its `tune:` section): the checks a schema cannot make, where
its files live, a trial's config and the winner's.

The search's winner joins the study's variants as `winner` once `tune_report` has written
it (rl.tune.configs reads it). Imports neither torch nor optuna: the Snakefile uses it at
parse time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rl.core.errors import ConfigError
from rl.core.secrets import has_credentials

WINNER = "winner"
STORAGE_ENV = "RL_TUNE_STORAGE"


def files(cfg: Mapping[str, Any]) -> dict[str, Path]:
    """The search's files under results/<study>/tune/ (the journal is no rule's output:
    Snakemake deletes the outputs of a job that did not finish)."""
    tune = Path(cfg["results_dir"]) / cfg["study"] / "tune"
    return {
        "dir": tune,
        "journal": tune / "journal.log",
        "trials_dir": tune / "trials",
        "workers": tune / "workers",
        "best": tune / "best.yaml",
        "trials": tune / "trials.csv",
        "importances": tune / "importances.csv",
        "figures": Path(cfg["results_dir"]) / cfg["study"] / "figures" / "tune",
    }


def storage_url(cfg: Mapping[str, Any]) -> str | None:
    """The Optuna storage URL (None: the study's journal file); RL_TUNE_STORAGE first."""
    return os.environ.get(STORAGE_ENV) or cfg["tune"]["storage"]


def check_tune(cfg: Mapping[str, Any], source: str = "the config") -> None:
    """The search space names existing keys with usable ranges, the confirmation's seeds
    are not the search's, and no password sits in the config."""
    tune = cfg["tune"]

    def fail(key: str, why: str, fix: str) -> None:
        raise ConfigError(f"Invalid config key '{key}' in {source}: {why}. {fix}")

    seen = set()
    for i, item in enumerate(tune["space"]):
        key, where = item["key"], f"tune.space[{i}]"
        section, name = key.split(".")
        if name not in cfg[section]:
            fail(f"{where}.key", f"'{key}' is not a config key", "Name a key of that section.")
        if key in seen:
            fail(f"{where}.key", f"'{key}' is searched twice", "Keep one entry per key.")
        seen.add(key)
        ranged = "low" in item or "high" in item
        if ranged == ("choices" in item) or (ranged and not {"low", "high"} <= set(item)):
            fail(where, f"'{key}' needs either choices or both low and high", "Give one of them.")
        if ranged and not item["low"] < item["high"]:
            fail(where, f"low {item['low']} is not below high {item['high']}", "Swap them.")
        if ranged and item["log"] and item["low"] <= 0:
            fail(where, "a log scale needs low > 0", "Raise low or set log: false.")
    late = [s for s in cfg["seeds"] if s >= tune["first_seed"]]
    if late:
        fail(
            "seeds",
            f"seed(s) {late} are at or above tune.first_seed={tune['first_seed']}, where the "
            f"search's trials take their seeds",
            "The confirmation needs seeds the search never saw: lower them or raise "
            "tune.first_seed.",
        )
    if tune["storage"] and has_credentials(tune["storage"]):
        fail(
            "tune.storage",
            "it holds credentials (user:password@); configs and results are not the place "
            "for secrets",
            "Drop the password from the URL and give it in PGPASSWORD or ~/.pgpass, or put "
            f"the whole URL in {STORAGE_ENV}.",
        )


def overrides(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{'ppo.lr': 1e-3} -> {'ppo': {'lr': 1e-3}}."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        section, name = key.split(".")
        out.setdefault(section, {})[name] = value
    return out


def searched_keys(cfg: Mapping[str, Any]) -> list[str]:
    return [item["key"] for item in cfg["tune"]["space"]]

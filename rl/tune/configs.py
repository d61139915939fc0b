"""A trial's config and the winner's: the base config of a tuning study with searched
values applied. Imports neither torch nor optuna (the Snakefile and every verb use it)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from rl.core.config import validate
from rl.core.errors import ConfigError
from rl.core.tuning import WINNER, files, overrides, searched_keys


def searched_config(cfg: Mapping[str, Any], params: Mapping[str, Any], source: str) -> dict:
    """The base config (no variants, no search) with `params` applied, validated."""
    base = {k: copy.deepcopy(v) for k, v in cfg.items() if k not in ("variants", "tune")}
    for section, values in overrides(params).items():
        base[section] = base[section] | values
    return validate(base, source=source, whole_study=False)


def best_params(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The winner's searched values, from the search's best.yaml (tune_report's)."""
    best = files(cfg)["best"]
    if not best.is_file():
        raise ConfigError(
            f"The variant '{WINNER}' of study '{cfg['study']}' is the search's best trial, "
            f"and its config {best} does not exist yet. Run the search first (snakemake "
            f"makes it before the winner's jobs; by hand: `python -m rl tune-worker` then "
            f"`python -m rl tune-report`)."
        )
    with open(best) as f:
        written = yaml.safe_load(f) or {}
    return {key: written[key.split(".")[0]][key.split(".")[1]] for key in searched_keys(cfg)}


def winner_config(cfg: Mapping[str, Any]) -> dict:
    """The resolved config of the variant `winner`: the base config with the best trial's
    values (read from best.yaml) and the study's tune section."""
    params = best_params(cfg)
    resolved = searched_config(cfg, params, f"variant '{WINNER}' (the search's best trial)")
    return resolved | {"tune": copy.deepcopy(cfg["tune"])}

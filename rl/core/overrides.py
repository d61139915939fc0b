"""`--set section.key=value`: one config value overridden on the command line."""

from __future__ import annotations

import copy

import yaml

from rl.core.errors import ConfigError


def _yaml_value(text: str):
    """A YAML scalar or collection; also `1e-4` (YAML 1.1 reads it as a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(raw: dict, assignments: list[str], source: str = "--set") -> dict:
    """`raw` with each `section.key=value` assignment applied (the value parsed as YAML:
    `ppo.lr=1e-4`, `seeds=[0,1]`, `mlflow.enabled=false`); validation comes after, so a
    wrong key or value is reported as for the file itself."""
    raw = copy.deepcopy(raw)
    for item in assignments:
        dotted, eq, value = item.partition("=")
        if not eq or not dotted.strip():
            raise ConfigError(
                f"{source} '{item}' is not an assignment: write section.key=value, e.g. "
                f"--set ppo.total_frames=65536."
            )
        *parents, last = dotted.strip().split(".")
        node = raw
        for key in parents:
            if not isinstance(node.setdefault(key, {}), dict):
                raise ConfigError(
                    f"{source} '{item}': '{key}' is a value, not a section. Set it directly."
                )
            node = node[key]
        try:
            node[last] = _yaml_value(value)
        except yaml.YAMLError:
            raise ConfigError(
                f"{source} '{item}': the value '{value}' is not valid YAML. Quote strings "
                f"that hold ':' or '#', or fix the value."
            ) from None
    return raw

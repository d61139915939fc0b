"""The search's result from its stored trials alone: the tidy trials table, the winner as a
ready study config (best.yaml), the parameter importances and the search figure.

The figure and the importances are made from the trials table, not from the storage, so a
reference result's table rebuilds them byte for byte (`python -m rl figures --from`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from rl.core import config as config_mod
from rl.core import tuning
from rl.core.files import write_csv, write_text
from rl.tune.configs import searched_config
from rl.tune.trial import distribution

TRIAL_ATTRS = (
    "seed", "reached", "frames_trained", "best_eval_return", "wall_s", "overhead_s", "worker",
)  # fmt: skip
IMPORTANCE_SEED = 0


def trials_table(study: optuna.Study, cfg: dict) -> pd.DataFrame:
    """One row per trial: its number, state, objective, seed, outcome, timing and values
    (a column per searched key), in trial order."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "state": t.state.name.lower(), "value": t.value}
        if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values:
            row["value"] = t.intermediate_values[max(t.intermediate_values)]
        row |= {a: t.user_attrs.get(a) for a in TRIAL_ATTRS}
        row["retry_of"] = t.system_attrs.get("failed_trial")  # RetryHeartbeatStaleTrialCallback's
        row |= {k: t.params.get(k) for k in tuning.searched_keys(cfg)}
        rows.append(row)
    columns = ["number", "state", "value", *TRIAL_ATTRS, "retry_of", *tuning.searched_keys(cfg)]
    return pd.DataFrame(rows, columns=columns)


def best_row(table: pd.DataFrame) -> pd.Series:
    done = table[table["state"] == "complete"]
    if done.empty:
        raise RuntimeError(
            "The search has no complete trial (every one was pruned or failed), so it has no "
            "winner. Raise ppo.total_frames, relax tune.pruner, or run more trials."
        )
    return done.sort_values(["value", "number"], kind="stable").iloc[0]


def best_config(cfg: dict, best: pd.Series) -> str:
    """The winner as a study config of its own: the base config with the best trial's
    values, the study's seeds, no search."""
    params = {k: _plain(best[k]) for k in tuning.searched_keys(cfg)}
    resolved = searched_config(cfg, params, "the search's best trial")
    resolved["study"] = f"{cfg['study']}-best"
    seed = "" if pd.isna(best["seed"]) else f", seed {int(best['seed'])}"
    header = (
        f"# The best trial of the search '{cfg['study']}' (trial {int(best['number'])}: "
        f"{best['value']:.0f} frames to {cfg['tune']['threshold']:g}{seed}),\n"
        f"# as a study config: `snakemake --cores 2 --configfile <this file>`. Searched:\n"
        + "".join(f"#   {k}: {v}\n" for k, v in params.items())
    )
    return header + config_mod.dump(resolved)


def _plain(value):
    """A table cell as the YAML scalar it was (numpy types and whole floats of ints)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def distributions(cfg: dict) -> dict[str, optuna.distributions.BaseDistribution]:
    return {item["key"]: distribution(item) for item in cfg["tune"]["space"]}


def importances(cfg: dict, table: pd.DataFrame) -> pd.DataFrame:
    """fANOVA importance of each searched key for the objective over the complete trials
    (Optuna's evaluator, seeded); empty with fewer than two."""
    done = table[table["state"] == "complete"]
    if len(done) < 2:
        return pd.DataFrame(columns=["key", "importance"])
    dists = distributions(cfg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    for _, row in done.iterrows():
        params = {k: _plain(row[k]) for k in dists}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=dists, value=row["value"])
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
    found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return pd.DataFrame({"key": list(found), "importance": list(found.values())})


def write_report(cfg: dict, table: pd.DataFrame, out: Path, figures: Path) -> list[Path]:
    """Importances and the search figure from the trials table, into `out` and `figures`."""
    from rl.tune.plotting import search_figure

    ranked = importances(cfg, table)
    write_csv(out / "importances.csv", ranked)
    png, pdf = figures / "search.png", figures / "search.pdf"
    search_figure(cfg, table, ranked, png, pdf)
    return [out / "importances.csv", png, pdf]


def write_best(cfg: dict, table: pd.DataFrame, path: Path) -> pd.Series:
    best = best_row(table)
    write_text(path, best_config(cfg, best))
    return best


def rebuild(cfg: dict, src: Path, out: Path) -> list[Path]:
    """`figures --from`: the importances and search figure from src/tune/trials.csv."""
    trials = src / "tune" / "trials.csv"
    if not trials.is_file():
        raise FileNotFoundError(
            f"'{trials}' is missing: a tuning study's figures are made from its trials table "
            f"(results/<study>/tune/trials.csv, copied by `python -m rl export-reference`)."
        )
    table = pd.read_csv(trials)
    if out != src:
        write_csv(out / "tune" / "trials.csv", table)
    return write_report(cfg, table, out / "tune", out / "figures" / "tune")

"""The tuning study's pieces on a real Optuna journal file: its config checks, the
objective's score, the sampler's reproducibility across restarts, orphaned trials of a dead
worker re-queued, and the report (best.yaml, the table, byte-identical figures)."""

import copy
import os
import socket
import subprocess
import sys

import optuna
import pandas as pd
import pytest
import yaml

from rl.core import config, tuning
from rl.core.errors import ConfigError
from rl.tune import report, search
from rl.tune.configs import winner_config
from rl.tune.trial import score, suggest

from support import REPO


@pytest.fixture
def cfg(tmp_path):
    with open(REPO / "configs" / "ci-tune.yaml") as f:
        raw = yaml.safe_load(f)
    raw["results_dir"] = str(tmp_path / "results")
    return config.validate(raw)


def _invalid(cfg, change) -> str:
    raw = copy.deepcopy(cfg)
    change(raw)
    with pytest.raises(ConfigError) as err:
        config.validate(raw)
    return str(err.value)


def test_config_errors_name_the_searched_key_and_the_fix(cfg):
    def unknown(c):
        c["tune"]["space"][0]["key"] = "ppo.learning_rate"

    assert "'tune.space[0].key'" in _invalid(cfg, unknown)

    def backwards(c):
        c["tune"]["space"][0] |= {"low": 0.1, "high": 0.01}

    assert "low 0.1 is not below high 0.01" in _invalid(cfg, backwards)

    def both(c):
        c["tune"]["space"][2]["low"] = 1

    assert "either choices or both low and high" in _invalid(cfg, both)

    def seen_seeds(c):
        c["seeds"] = [0, 100]

    assert "seeds the search never saw" in _invalid(cfg, seen_seeds)

    def password(c):
        c["tune"]["storage"] = "postgresql+psycopg2://optuna:hunter2@db:5433/optuna"

    message = _invalid(cfg, password)
    assert "PGPASSWORD" in message and "hunter2" not in message

    def compare_unknown(c):
        c["aggregate"]["compare"] = ["best", "tuned"]

    assert "aggregate.compare" in _invalid(cfg, compare_unknown)


def test_a_miss_scores_above_the_budget_and_nearer_misses_lower():
    budget, threshold = 1000, 9100.0
    assert score(9000.0, budget, threshold) < score(5000.0, budget, threshold)
    assert score(5000.0, budget, threshold) < score(None, budget, threshold) == 2 * budget
    assert score(9099.0, budget, threshold) > budget


def _quadratic(me: str):
    """A cheap objective over the ci-tune space (the sampler's behaviour, not PPO's)."""

    def objective(trial):
        trial.set_user_attr("worker", me)
        values = {item["key"]: suggest(trial, item) for item in objective.space}
        return (values["ppo.lr"] - 1e-3) ** 2 * 1e6 + values["ppo.num_epochs"]

    objective.worker = me
    return objective


def _run(cfg, trials: int) -> list[dict]:
    cfg = copy.deepcopy(cfg)
    cfg["tune"] |= {"trials": trials, "workers": 1}
    objective = _quadratic(search.worker_identity())
    objective.space = cfg["tune"]["space"]
    search.work(cfg, objective, journal=True)
    study = search.open_study(cfg)
    return [t.params for t in study.get_trials()]


def test_one_worker_reproduces_its_trials_after_a_restart_too(cfg, tmp_path):
    whole = _run(cfg, 6)
    other = copy.deepcopy(cfg)
    other["results_dir"] = str(tmp_path / "again")
    assert _run(other, 6) == whole
    restarted = copy.deepcopy(cfg)
    restarted["results_dir"] = str(tmp_path / "restarted")
    _run(restarted, 3)
    assert _run(restarted, 6) == whole  # a second worker process continues the study
    other["tune"]["sampler_seed"] = 1
    other["results_dir"] = str(tmp_path / "seed1")
    assert _run(other, 6) != whole


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_a_dead_workers_running_trial_is_failed_and_queued_again(cfg):
    study = search.open_study(cfg)
    dead = study.ask({"ppo.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)})
    dead.set_user_attr("worker", f"{socket.gethostname()}:{_dead_pid()}:1")
    dead.set_user_attr("seed", 100)
    alive = study.ask()
    alive.set_user_attr("worker", search.worker_identity())
    elsewhere = study.ask()
    elsewhere.set_user_attr("worker", f"another-node:{os.getpid()}:1")
    assert search.requeue_orphans(study) == [dead.number]
    trials = study.get_trials()
    assert trials[dead.number].state == optuna.trial.TrialState.FAIL
    retry = trials[-1]
    assert retry.state == optuna.trial.TrialState.WAITING
    assert retry.params == trials[dead.number].params and retry.user_attrs["seed"] == 100
    assert retry.system_attrs["failed_trial"] == dead.number
    assert trials[alive.number].state == trials[elsewhere.number].state
    assert trials[alive.number].state == optuna.trial.TrialState.RUNNING
    assert search.requeue_orphans(study) == []  # once


def _finished_study(cfg) -> optuna.Study:
    cfg = copy.deepcopy(cfg)
    cfg["tune"]["workers"] = 1
    objective = _quadratic(search.worker_identity())
    objective.space = cfg["tune"]["space"]
    search.work(cfg, objective, journal=True)
    return search.open_study(cfg)


def test_the_report_writes_the_winner_as_a_study_config(cfg):
    table = report.trials_table(_finished_study(cfg), cfg)
    assert list(table["number"]) == [0, 1, 2, 3] and set(table["state"]) == {"complete"}
    path = tuning.files(cfg)["best"]
    best = report.write_best(cfg, table, path)
    assert best["value"] == table["value"].min()
    written = config.load(path)  # a valid study config of its own
    assert written["study"] == "ci-tune-best" and "tune" not in written
    assert written["ppo"]["lr"] == pytest.approx(best["ppo.lr"])
    assert written["ppo"]["num_epochs"] == best["ppo.num_epochs"]
    winner = winner_config(cfg)
    assert winner["ppo"]["lr"] == written["ppo"]["lr"]
    assert winner["ppo"]["total_frames"] == cfg["ppo"]["total_frames"]


def test_the_winner_has_no_config_before_the_search(cfg):
    with pytest.raises(ConfigError, match="does not exist yet"):
        winner_config(cfg)


def test_figures_rebuild_byte_for_byte_from_the_trials_table(cfg, tmp_path):
    table = report.trials_table(_finished_study(cfg), cfg)
    src = tmp_path / "ref"
    (src / "tune").mkdir(parents=True)
    table.to_csv(src / "tune" / "trials.csv", index=False)
    first = report.rebuild(cfg, src, tmp_path / "a")
    second = report.rebuild(cfg, src, tmp_path / "b")
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    ranked = pd.read_csv(first[0])
    assert set(ranked["key"]) == set(tuning.searched_keys(cfg))
    assert ranked["importance"].sum() == pytest.approx(1.0)

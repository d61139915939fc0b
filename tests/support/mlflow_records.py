"""What a reviewer sees in an MLflow store, counted, and `mlflow-sync` as a user runs it
(for the tracking tests)."""

import os
import subprocess
import sys
from pathlib import Path


def records(uri: str, experiment: str) -> dict:
    """Everything a reviewer sees, counted: per run (by stage, variant, seed) its status,
    parent, params, metric points per key, artifact files and logged models."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_id = {r.info.run_id: r for r in runs}

    def name(run):
        t = run.data.tags
        return (t["rl.kind"], t.get("rl.stage", ""), t.get("rl.variant", ""), t.get("rl.seed", ""))

    def files(run_id, path=None):
        out = []
        for f in client.list_artifacts(run_id, path):
            out += files(run_id, f.path) if f.is_dir else [f.path]
        return out

    out = {}
    for run in runs:
        key = name(run)
        assert key not in out, f"duplicate run {key}"
        parent = by_id.get(run.data.tags.get("mlflow.parentRunId"))
        models = client.search_logged_models(
            [exp.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        out[key] = {
            "status": run.info.status,
            "parent": name(parent) if parent else None,
            "params": dict(run.data.params),
            "metrics": {
                k: len(client.get_metric_history(run.info.run_id, k)) for k in run.data.metrics
            },
            "artifacts": sorted(files(run.info.run_id)),
            "models": len(models),
        }
    return out


def totals(recs: dict) -> dict:
    return {
        "runs": len(recs),
        "params": sum(len(r["params"]) for r in recs.values()),
        "metric_points": sum(sum(r["metrics"].values()) for r in recs.values()),
        "artifacts": sum(len(r["artifacts"]) for r in recs.values()),
        "models": sum(r["models"] for r in recs.values()),
    }


def sync(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The verb as a user runs it, in `cwd` (the study's store is found from there)."""
    cmd = [sys.executable, "-m", "rl", "mlflow-sync", "--config", "results/ci/config.yaml", *args]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return proc

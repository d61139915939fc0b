"""A trained policy as the run's MLflow model (pytorch flavor, torch.export format, with
signature and input example): `mlflow.pytorch.load_model(uri)` gives a module mapping raw
observations to actions."""

from __future__ import annotations

from contextlib import contextmanager
from importlib import metadata

MODEL_NAME = "policy"


@contextmanager
def _fluent_store(uri: str, experiment_id: str):
    """Point MLflow's fluent state at `uri` and `experiment_id` for a moment: `log_model`
    files its LoggedModel under the fluent experiment, not the run's. `set_tracking_uri`
    and `set_experiment` would also leak into os.environ (and so into subprocesses); the
    pinned mlflow keeps both in these module globals, restored on exit."""
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    saved = utils._tracking_uri, fluent._active_experiment_id
    utils._tracking_uri, fluent._active_experiment_id = uri, experiment_id
    try:
        yield
    finally:
        utils._tracking_uri, fluent._active_experiment_id = saved


def log_model(run, module, example) -> str:
    """Log `module` (a torch module; `example`: a float32 numpy batch of its input) as
    `run`'s model, once: a model the run already holds is returned, not logged again."""
    import mlflow
    import torch

    existing = run.client.search_logged_models(
        [run.experiment_id],
        filter_string=f"source_run_id = '{run.run_id}' AND name = '{MODEL_NAME}'",
        max_results=1,
    )
    if existing:
        return f"models:/{existing[0].model_id}"
    output = module(torch.from_numpy(example)).numpy()
    with _fluent_store(run.uri, run.experiment_id):
        info = mlflow.pytorch.log_model(
            module,
            name=MODEL_NAME,
            run_id=run.run_id,
            signature=mlflow.models.infer_signature(example, output),
            input_example=example,
            serialization_format="pt2",
            pip_requirements=[f"{p}=={metadata.version(p)}" for p in ("torch", "numpy")],
        )
    run.client.set_tag(run.run_id, "rl.model_uri", info.model_uri)
    return info.model_uri

# Creates the MLflow store, experiment and per-seed parent runs once, before any parallel
# job (a fresh sqlite store migrated by racing jobs breaks for good: mlflow-facts.md).


rule mlflow_init:
    output:
        OUT["mlflow_marker"],
    log:
        os.path.join(OUT["logs"], "mlflow_init", "all.log"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        config=RESOLVED_CONFIG,
        # not the seeds: stage jobs add the parent run of a new seed themselves
        settings=settings_hash("study")
        + rl_config.config_hash(
            {k: config["mlflow"][k] for k in ("enabled", "tracking_uri", "experiment")}
        ),
    shell:
        f"{RL} -m rl mlflow-init" " --config {params.config} --marker {output} > {log} 2>&1"

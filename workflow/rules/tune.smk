# The tuning study (a `tune:` section, docs/tuning.md): tune_worker jobs pull trials from one
# Optuna study until it has tune.trials finished ones, the tune_report checkpoint writes the
# winner (best.yaml), and the winner then trains on the study's seeds as the variant
# `winner`, beside the study's own variants, through the PPO rules above.

if TUNE:

    rule tune_worker:
        input:
            MLFLOW_MARKER,
        output:
            os.path.join(TUNE_FILES["workers"], "worker{worker}.json"),
        log:
            os.path.join(OUT["logs"], "tune_worker", "worker{worker}.log"),
        wildcard_constraints:
            worker=r"\d+",
        # the search is the study's longest path (the winner's jobs wait for it): first
        priority: 4
        # each trial is one training run; the workers run side by side
        threads: rl_config.train_cores(config)
        resources:
            mem_mb=2000,
            runtime=24 * 60,
            gpu=GPU_JOBS,
        params:
            config=RESOLVED_CONFIG,
            settings=settings_hash("tune", *rl_config.PPO_SECTIONS),
            marker=MARKER_ARG,
        shell:
            f"{RL} -m rl tune-worker"
            " --config {params.config} --worker {wildcards.worker} --threads {threads}"
            " --out {output} {params.marker} > {log} 2>&1"

    checkpoint tune_report:
        input:
            MLFLOW_MARKER,
            workers=expand(
                rules.tune_worker.output[0], worker=range(config["tune"]["workers"] if TUNE else 0)
            ),
        output:
            best=TUNE_FILES["best"],
            trials=report(
                TUNE_FILES["trials"], caption="../report/tune_trials.rst", category="Search"
            ),
            importances=TUNE_FILES["importances"],
            png=report(tune_figures()[0], caption="../report/tune_figure.rst", category="Search"),
            pdf=tune_figures()[1],
        log:
            os.path.join(OUT["logs"], "tune_report", "all.log"),
        priority: 4
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            config=RESOLVED_CONFIG,
            settings=settings_hash("tune", "plot"),
            marker=MARKER_ARG,
        shell:
            f"{RL} -m rl tune-report"
            " --config {params.config} --workers {input.workers} {params.marker} > {log} 2>&1"

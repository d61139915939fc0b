# The differentiable-control pendulum: a controller trained through the simulator, per
# variant and seed, then folded across seeds into tables and the four-panel figure.


rule train_pendulum:
    input:
        MLFLOW_MARKER,
    output:
        **snapshot_outputs("pendulum"),
        policy=OUT["pendulum_policy"],
        metrics=OUT["pendulum_metrics"],
        evals=OUT["pendulum_eval"],
    log:
        log_path("train_pendulum"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        config=RESOLVED_CONFIG,
        settings=with_snapshots(settings_hash("pendulum")),
        out_dir=OUT["pendulum_dir"],
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl train-pendulum"
        " --config {params.config} --seed {wildcards.seed}"
        " --variant {wildcards.variant} --threads {threads} --out-dir {params.out_dir}"
        " {params.marker} > {log} 2>&1"


rule animate_pendulum:
    input:
        MLFLOW_MARKER,
        evals=OUT["pendulum_eval"],
    output:
        mp4=report(
            OUT["pendulum_animation_mp4"],
            caption="../report/pendulum_animation.rst",
            category="Videos",
            subcategory="Pendulum controller",
            labels={"seed": "{seed}", "variant": "{variant}"},
        ),
        gif=OUT["pendulum_animation_gif"],
    log:
        log_path("animate_pendulum"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=15,
    params:
        config=RESOLVED_CONFIG,
        settings=settings_hash("video", "pendulum"),
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl animate-pendulum"
        " --config {params.config} --seed {wildcards.seed}"
        " --variant {wildcards.variant} --threads {threads} --trajectories {input.evals}"
        " --mp4 {output.mp4} --gif {output.gif} {params.marker} > {log} 2>&1"


rule aggregate_pendulum:
    input:
        MLFLOW_MARKER,
        train=per_seed("pendulum_metrics"),
        evals=per_seed("pendulum_eval"),
    output:
        train=OUT["agg_pendulum_train"],
        train_curves=OUT["agg_pendulum_train_curves"],
        evals=OUT["agg_pendulum_eval"],
        eval_curves=OUT["agg_pendulum_eval_curves"],
        summary=report(
            OUT["agg_pendulum_summary"],
            caption="../report/pendulum_summary.rst",
            category="Pendulum",
        ),
    log:
        os.path.join(OUT["logs"], "aggregate_pendulum", "all.log"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=RESOLVED_CONFIG,
        settings=settings_hash("aggregate"),
        out_dir=lambda w, output: os.path.dirname(output.summary),
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl aggregate-pendulum"
        " --config {params.config} --train {input.train}"
        " --evals {input.evals} --out-dir {params.out_dir} {params.marker} > {log} 2>&1"


rule plot_pendulum:
    input:
        MLFLOW_MARKER,
        tables=rules.aggregate_pendulum.output,
    output:
        png=report(
            OUT["fig_pendulum_png"],
            caption="../report/pendulum_figure.rst",
            category="Pendulum",
        ),
        pdf=OUT["fig_pendulum_pdf"],
    log:
        os.path.join(OUT["logs"], "plot_pendulum", "all.log"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=RESOLVED_CONFIG,
        settings=settings_hash("plot", "study"),
        agg_dir=lambda w, input: os.path.dirname(input.tables[0]),
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl plot-pendulum"
        " --config {params.config} --agg-dir {params.agg_dir}"
        " --png {output.png} --pdf {output.pdf} {params.marker} > {log} 2>&1"

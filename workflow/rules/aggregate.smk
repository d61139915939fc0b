# Across-seed tables and the four-panel figures, from per-seed results alone.


rule aggregate:
    input:
        MLFLOW_MARKER,
        train=per_seed("ppo_metrics"),
        train_eval=per_seed("ppo_train_eval"),
        episodes=per_seed("eval_episodes"),
    output:
        train=OUT["agg_train"],
        train_eval=OUT["agg_train_eval"],
        episodes=OUT["agg_eval"],
        curves=os.path.join(OUT["agg_dir"], "ppo_train_curves.csv"),
        eval_curves=os.path.join(OUT["agg_dir"], "ppo_train_eval_curves.csv"),
        summary=report(OUT["agg_summary"], caption="../report/ppo_summary.rst", category="PPO"),
        thresholds=report(
            OUT["agg_thresholds"], caption="../report/ppo_thresholds.rst", category="PPO"
        ),
        profile=OUT["agg_profile"],
        comparison=report(
            OUT["agg_comparison"], caption="../report/ppo_comparison.rst", category="PPO"
        ),
    log:
        os.path.join(OUT["logs"], "aggregate", "all.log"),
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
        f"{RL} -m rl aggregate"
        " --config {params.config} --train {input.train}"
        " --train-eval {input.train_eval} --episodes {input.episodes}"
        " --out-dir {params.out_dir} {params.marker} > {log} 2>&1"


rule plot:
    input:
        MLFLOW_MARKER,
        tables=rules.aggregate.output,
    output:
        png=report(OUT["fig_png"], caption="../report/ppo_figure.rst", category="PPO"),
        pdf=OUT["fig_pdf"],
        stats_png=report(
            OUT["fig_stats_png"], caption="../report/ppo_statistics.rst", category="PPO"
        ),
        stats_pdf=OUT["fig_stats_pdf"],
    log:
        os.path.join(OUT["logs"], "plot", "all.log"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=RESOLVED_CONFIG,
        settings=settings_hash("plot", "env", "study"),
        agg_dir=lambda w, input: os.path.dirname(input.tables[0]),
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl plot"
        " --config {params.config} --agg-dir {params.agg_dir}"
        " --png {output.png} --pdf {output.pdf} --stats-png {output.stats_png}"
        " --stats-pdf {output.stats_pdf} {params.marker} > {log} 2>&1"

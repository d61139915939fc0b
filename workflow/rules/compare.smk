# The comparison study (a `compare:` section): every variant's policy snapshots scored by
# one evaluator on gymnasium Pendulum-v1, the BPTT gradient probed, then folded across
# seeds into the comparison's tables and figures.


rule evaluate_snapshots:
    input:
        MLFLOW_MARKER,
        snapshots=snapshots_of,
    output:
        OUT["compare_episodes"],
    log:
        log_path("evaluate_snapshots"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    params:
        config=RESOLVED_CONFIG,
        settings=COMPARE_SETTINGS,
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl evaluate-snapshots"
        " --config {params.config} --seed {wildcards.seed}"
        " --variant {wildcards.variant} --threads {threads} --snapshots {input.snapshots}"
        " --out {output} {params.marker} > {log} 2>&1"


rule probe_gradients:
    input:
        MLFLOW_MARKER,
        snapshots=OUT["pendulum_snapshots"],
    output:
        OUT["compare_gradients"],
    log:
        log_path("probe_gradients"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    params:
        config=RESOLVED_CONFIG,
        settings=COMPARE_SETTINGS,
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl probe-gradients"
        " --config {params.config} --seed {wildcards.seed}"
        " --variant {wildcards.variant} --threads {threads} --snapshots {input.snapshots}"
        " --out {output} {params.marker} > {log} 2>&1"


rule aggregate_compare:
    input:
        MLFLOW_MARKER,
        episodes=per_seed("compare_episodes"),
        gradients=per_seed("compare_gradients"),
    output:
        **({"gradient_curves": compare_table("gradient_curves")} if VARIANTS_OF["pendulum"] else {}),
        episodes=compare_table("episodes"),
        gradients=compare_table("gradients"),
        scores=compare_table("scores"),
        curves=compare_table("curves"),
        summary=compare_table("summary", "compare_summary"),
        profile=compare_table("profile"),
        improvement=compare_table("improvement", "compare_improvement"),
        crossings=compare_table("crossings"),
        crossing_summary=compare_table("crossing_summary", "compare_thresholds"),
        first_to_threshold=compare_table("first_to_threshold", "compare_first"),
        # the gradient probe's curves, when a variant trains through the simulator
    log:
        os.path.join(OUT["logs"], "aggregate_compare", "all.log"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=RESOLVED_CONFIG,
        settings=settings_hash("aggregate") + settings_hash("compare") if COMPARE else "",
        out_dir=lambda w, output: os.path.dirname(output.summary),
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl aggregate-compare"
        " --config {params.config} --episodes {input.episodes}"
        " --gradients {input.gradients} --out-dir {params.out_dir} {params.marker}"
        " > {log} 2>&1"


rule plot_compare:
    input:
        MLFLOW_MARKER,
        tables=rules.aggregate_compare.output,
    output:
        png=report(
            OUT["fig_compare_png"], caption="../report/compare_figure.rst", category="Comparison"
        ),
        pdf=OUT["fig_compare_pdf"],
        gradients_png=report(
            OUT["fig_gradients_png"],
            caption="../report/compare_gradients.rst",
            category="Comparison",
        ),
        gradients_pdf=OUT["fig_gradients_pdf"],
    log:
        os.path.join(OUT["logs"], "plot_compare", "all.log"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=RESOLVED_CONFIG,
        settings=settings_hash("plot", "study") + (settings_hash("compare") if COMPARE else ""),
        agg_dir=lambda w, input: os.path.dirname(input.tables[0]),
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl plot-compare"
        " --config {params.config} --agg-dir {params.agg_dir}"
        " --png {output.png} --pdf {output.pdf} --gradients-png {output.gradients_png}"
        " --gradients-pdf {output.gradients_pdf} {params.marker} > {log} 2>&1"

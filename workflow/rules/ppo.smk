# PPO on the configured gymnasium MuJoCo task, per variant and seed.


rule obs_norm_stats:
    input:
        MLFLOW_MARKER,
        winner_best,
    output:
        OUT["obs_norm"],
    log:
        log_path("obs_norm_stats"),
    # The PPO chain is the study's longest path: start it first, so the pendulum jobs
    # fill the cores after it rather than delay it (2 seeds on 2 cores: 88 -> 75-77 s).
    priority: 3
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=RESOLVED_CONFIG,
        settings=settings_hash("env", "obs_norm"),
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl obs-norm-stats"
        " --config {params.config} --seed {wildcards.seed}"
        " --variant {wildcards.variant} --threads {threads} --out {output} {params.marker}"
        " > {log} 2>&1"


rule train_ppo:
    input:
        MLFLOW_MARKER,
        winner_best,
        stats=OUT["obs_norm"],
    output:
        **snapshot_outputs("ppo"),
        policy=OUT["ppo_policy"],
        metrics=OUT["ppo_metrics"],
        train_eval=OUT["ppo_train_eval"],
    log:
        log_path("train_ppo"),
    priority: 2
    # one core per collector process (ppo.collector_workers; they collect while the
    # trainer waits, and wait while it updates), times each one's physics threads
    threads: lambda wildcards: train_cores(wildcards.variant)
    resources:
        mem_mb=2000,
        runtime=120,
        gpu=GPU_JOBS,
    params:
        config=RESOLVED_CONFIG,
        settings=with_snapshots(settings_hash(*rl_config.PPO_SECTIONS)),
        out_dir=OUT["ppo_dir"],
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl train-ppo"
        " --config {params.config} --seed {wildcards.seed}"
        " --variant {wildcards.variant} --threads {threads} --obs-stats {input.stats}"
        " --out-dir {params.out_dir} {params.marker} > {log} 2>&1"


rule evaluate_ppo:
    input:
        MLFLOW_MARKER,
        winner_best,
        policy=OUT["ppo_policy"],
        stats=OUT["obs_norm"],
    output:
        **eval_video_outputs(),
        episodes=OUT["eval_episodes"],
        summary=OUT["eval_summary"],
    log:
        log_path("evaluate_ppo"),
    priority: 1
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        config=RESOLVED_CONFIG,
        settings=settings_hash("env", "evaluation", "device", "video"),
        videos=f"--video-dir {OUT['eval_dir']}" if VIDEO["enabled"] else "",
        marker=MARKER_ARG,
    shell:
        f"{RL} -m rl evaluate-ppo"
        " --config {params.config} --seed {wildcards.seed}"
        " --variant {wildcards.variant} --threads {threads} --policy {input.policy}"
        " --obs-stats {input.stats} --episodes-out {output.episodes}"
        " --summary-out {output.summary} {params.videos} {params.marker} > {log} 2>&1"

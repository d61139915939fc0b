"""Videos: real MuJoCo frames rendered headless (MUJOCO_GL=egl, set in conftest), encoded by
the ffmpeg of imageio-ffmpeg and read back; the evaluation numbers with and without them;
the errors when rendering cannot start or the input is wrong."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from rl.analysis.video import (
    RenderUnavailable,
    animate_pendulum,
    check_frames,
    probe,
    write_episode_videos,
)
from rl.core import config
from rl.core.checkpoint import save
from rl.core.files import write_json
from rl.ppo.envs import make_env, make_eval_env, observation_stats
from rl.ppo.evaluate import evaluate, evaluate_episode, pick_episodes, record_episodes
from rl.ppo.models import make_actor_critic

from support import REPO


@pytest.fixture(scope="module")
def cfg():
    with open(REPO / "configs" / "ci.yaml") as f:
        return config.validate(yaml.safe_load(f))


@pytest.fixture(scope="module")
def policy(cfg, tmp_path_factory):
    """An untrained actor of the ci network saved as train-ppo saves it, and its stats:
    its episodes fall within a few dozen steps, each a little differently."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("policy")
    stats = observation_stats(cfg["env"], 200, seed=0)
    env, _ = make_env(cfg["env"], 0, num_envs=1, obs_stats=stats)
    actor, _ = make_actor_critic(
        cfg["ppo"], env.observation_spec["observation"].shape[-1], env.action_spec, "cpu"
    )
    env.close()
    save(folder / "policy.pt", {"actor": actor.state_dict()})
    write_json(folder / "stats.json", stats)
    return folder / "policy.pt", folder / "stats.json", stats


@pytest.fixture(scope="module")
def recorded(cfg, policy):
    path, _, stats = policy
    episodes = evaluate(cfg, 0, path, stats)
    return episodes, record_episodes(cfg, 0, path, stats, episodes)


def test_watching_an_episode_does_not_change_it(cfg, policy):
    """The hook that renders (`on_state`) sees every state but the last and changes
    nothing: the same seeded episodes with and without it."""
    path, _, stats = policy
    from rl.ppo.evaluate import load_actor

    results = {}
    for watched in (False, True):
        env = make_eval_env(cfg["env"], 7, obs_stats=stats)
        actor, _ = load_actor(cfg, path, "cpu", env)
        rows = []
        for _ in range(3):
            states = []
            hook = (lambda env, s=states: s.append(1)) if watched else None
            ret, length = evaluate_episode(env, actor, cfg["env"]["max_episode_steps"], hook)
            rows.append((ret, length, len(states) if watched else length))
        env.close()
        results[watched] = rows
    assert results[True] == results[False]
    assert len({r for r, _, _ in results[False]}) > 1  # episodes differ: the seed moves on


def test_raw_frames_are_real_images_that_move(cfg, recorded):
    episodes, recordings = recorded
    vcfg = cfg["video"]
    assert set(recordings) == {"first", "worst"}
    picks = pick_episodes(episodes)
    assert recordings["worst"]["return"] == episodes["return"].min()
    for name, rec in recordings.items():
        want = episodes.iloc[picks[name]]
        assert rec["episode"] == picks[name]
        assert (rec["return"], rec["length"]) == (want["return"], want["length"])
        frames = rec["frames"]
        assert len(frames) == min(rec["length"], vcfg["max_frames"])
        for frame in frames:
            assert frame.shape == (vcfg["height"], vcfg["width"], 3) and frame.dtype == np.uint8
            assert frame.max() > frame.min()  # not blank
            assert frame.std() > 5  # a scene, not a near-uniform fill
        changed = [not np.array_equal(a, b) for a, b in zip(frames, frames[1:], strict=False)]
        assert sum(changed) >= len(changed) // 2, "frames hardly move"
        assert not np.array_equal(frames[0], frames[-1])
        check_frames(frames, name)  # the guard the writer applies passes on real frames


def test_frame_guard_refuses_black_and_frozen_videos():
    black = [np.zeros((48, 64, 3), np.uint8)] * 3
    with pytest.raises(RenderUnavailable, match="single colour"):
        check_frames(black, "black")
    rng = np.random.default_rng(0)
    still = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)] * 4
    with pytest.raises(RenderUnavailable, match="same image"):
        check_frames(still, "frozen")
    with pytest.raises(RenderUnavailable, match="no frame"):
        check_frames([], "empty")


def test_videos_play_back_with_their_numbers(cfg, recorded, tmp_path):
    _, recordings = recorded
    raw_before = {k: [f.copy() for f in r["frames"]] for k, r in recordings.items()}
    rows = write_episode_videos(recordings, tmp_path, cfg["video"], "ci seed 0")
    for name, rec in recordings.items():
        row = rows[name]
        assert row["frames"] == len(rec["frames"]) and row["return"] == rec["return"]
        info = probe(tmp_path / row["mp4"])
        assert info["codec"] == "h264"
        assert info["size"] == (cfg["video"]["width"], cfg["video"]["height"])
        assert info["frames"] == row["frames"]
        assert info["fps"] == pytest.approx(cfg["video"]["fps"])
        assert row["mp4_bytes"] == (tmp_path / row["mp4"]).stat().st_size > 1000
        gif = Image.open(tmp_path / row["gif"])
        assert gif.size[0] == round(cfg["video"]["width"] * cfg["video"]["gif_scale"])
        assert gif.n_frames >= 2
        # the caption went on copies: the raw frames are untouched
        for a, b in zip(raw_before[name], rec["frames"], strict=True):
            assert np.array_equal(a, b)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes left no temporary file


def _verb(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rl", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def _evaluate_args(config_path, policy, out: Path, videos: bool) -> list[str]:
    path, stats_path, _ = policy
    args = ["evaluate-ppo", "--config", str(config_path), "--seed", "0", "--threads", "1"]
    args += ["--policy", str(path), "--obs-stats", str(stats_path)]
    args += ["--episodes-out", str(out / "episodes.csv"), "--summary-out", str(out / "s.json")]
    return args + (["--video-dir", str(out)] if videos else [])


def _config(tmp_path, **video) -> Path:
    with open(REPO / "configs" / "ci.yaml") as f:
        raw = yaml.safe_load(f)
    raw["video"] = {**raw.get("video", {}), **video}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_recording_never_changes_the_evaluation_numbers(policy, tmp_path):
    """The verb with recording on and off: the same episodes.csv, and the videos show
    exactly the episodes of that table (their returns and lengths, replayed)."""
    on, off = tmp_path / "on", tmp_path / "off"
    proc = _verb(_evaluate_args(_config(tmp_path), policy, on, videos=True))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _verb(_evaluate_args(_config(tmp_path, enabled=False), policy, off, videos=True))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(off.glob("*.mp4")) and not (off / "videos.json").exists()
    a, b = pd.read_csv(on / "episodes.csv"), pd.read_csv(off / "episodes.csv")
    pd.testing.assert_frame_equal(a, b)
    manifest = json.loads((on / "videos.json").read_text())
    assert manifest["mujoco_gl"] == "egl"
    for name, row in manifest["videos"].items():
        episode = a.iloc[row["episode"]]
        assert (row["return"], row["length"]) == (episode["return"], episode["length"])
        assert probe(on / f"episode-{name}.mp4")["frames"] == row["frames"] > 1


def test_no_egl_is_one_clear_paragraph_or_a_warned_skip(policy, tmp_path):
    """An EGL with no driver (what a machine without libegl-mesa0 has): the job fails with
    one paragraph naming the packages and MUJOCO_GL; with on_error: skip it warns, writes
    the evaluation and records why there is no video."""
    no_driver = {"MUJOCO_GL": "egl", "__EGL_VENDOR_LIBRARY_FILENAMES": str(tmp_path / "none")}
    out = tmp_path / "fail"
    proc = _verb(_evaluate_args(_config(tmp_path), policy, out, videos=True), no_driver)
    assert proc.returncode == 1, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, proc.stderr[-3000:]
    for needed in ("MUJOCO_GL=egl", "libegl1", "libgl1-mesa-dri", "osmesa", "video.on_error"):
        assert needed in error[0]
    assert "Traceback" not in proc.stderr
    assert "episodes 3/3" not in proc.stderr  # found before the evaluation, not after it
    assert not (out / "episodes.csv").exists() and not list(out.glob("*.mp4"))

    out = tmp_path / "skip"
    proc = _verb(
        _evaluate_args(_config(tmp_path, on_error="skip"), policy, out, videos=True), no_driver
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING no evaluation videos" in proc.stderr
    assert "libegl1" in json.loads((out / "videos.json").read_text())["skipped"]
    assert len(pd.read_csv(out / "episodes.csv")) == 3
    assert not list(out.glob("*.mp4")) and not list(out.glob("*.gif"))


def test_unknown_mujoco_gl_is_refused_before_mujoco_starts(policy, tmp_path):
    out = tmp_path / "out"
    proc = _verb(_evaluate_args(_config(tmp_path), policy, out, True), {"MUJOCO_GL": "vulkan"})
    assert proc.returncode == 1 and "MUJOCO_GL=vulkan" in proc.stderr
    assert "egl" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_bad_video_config_names_the_key(cfg):
    raw = yaml.safe_load((REPO / "configs" / "ci.yaml").read_text())
    raw["video"]["width"] = 65
    with pytest.raises(config.ConfigError, match="'video.width'"):
        config.validate(raw)
    raw["video"] = {"on_error": "ignore"}
    with pytest.raises(config.ConfigError, match="'video.on_error'.*fail"):
        config.validate(raw)


def test_pendulum_animation_plays_every_step(cfg, tmp_path):
    from rl.pendulum.train import evaluate_controller, make_policy

    torch.manual_seed(0)
    evals = evaluate_controller(cfg, make_policy(cfg["pendulum"]))
    mp4, gif = tmp_path / "a.mp4", tmp_path / "a.gif"
    row = animate_pendulum(evals, cfg["pendulum"]["physics"], cfg["video"], mp4, gif, "test")
    steps = min(cfg["pendulum"]["eval_steps"], cfg["video"]["max_frames"])
    assert row["frames"] == steps and row["starts"] == len(cfg["pendulum"]["eval_starts"])
    info = probe(mp4)
    assert info["codec"] == "h264" and info["frames"] == steps
    assert info["size"] == (cfg["video"]["animation_width"], cfg["video"]["animation_height"])
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(mp4))
    next(reader)
    frames = [np.frombuffer(f, np.uint8) for f in reader]
    assert not np.array_equal(frames[0], frames[-1])  # the pendulums moved
    small = Image.open(gif)
    assert small.n_frames >= 2
    for got, full in zip(small.size, info["size"], strict=True):
        assert abs(got - full * cfg["video"]["gif_scale"]) <= 2


def test_animation_of_a_wrong_table_is_a_clear_error(cfg, tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"iteration": [1, 2], "return": [0.0, 1.0]}).to_csv(bad, index=False)
    args = ["animate-pendulum", "--config", str(REPO / "configs" / "ci.yaml"), "--seed", "0"]
    out = ["--mp4", str(tmp_path / "a.mp4"), "--gif", str(tmp_path / "a.gif")]
    proc = _verb([*args, "--trajectories", str(bad), *out])
    assert proc.returncode == 1 and "lack the columns" in proc.stderr
    assert "eval_trajectories.csv" in proc.stderr and "Traceback" not in proc.stderr
    proc = _verb([*args, "--trajectories", str(tmp_path / "none.csv"), *out])
    assert proc.returncode == 1 and "Missing pendulum trajectories" in proc.stderr
    assert not (tmp_path / "a.mp4").exists()


@pytest.mark.parametrize(
    "video, present, absent",
    [
        ({}, ["animate_pendulum", "episode-first.mp4", "episode-worst.gif"], []),
        ({"on_error": "skip"}, ["animate_pendulum", "videos.json"], ["episode-first.mp4"]),
        ({"enabled": False}, [], ["animate_pendulum", "videos.json", ".mp4", "--video-dir"]),
    ],
)
def test_the_switch_decides_which_video_jobs_run(make_workdir, tmp_path, video, present, absent):
    """The planned jobs (a dry run of the real Snakefile): videos are declared outputs, the
    switch removes them and the animation rule, and with on_error: skip only the manifest
    is declared (a job may end without the videos)."""
    workdir = make_workdir("dryrun")
    config_path = _config(tmp_path, **video)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--configfile", str(config_path)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = proc.stdout + proc.stderr
    for text in present:
        assert text in plan, text
    for text in absent:
        assert text not in plan, text

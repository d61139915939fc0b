"""Videos of what the agents do: MuJoCo frames of evaluation episodes and the pendulum
controller's matplotlib animation, encoded to MP4 (H.264 in yuv420p, which browsers play)
by the ffmpeg that the imageio-ffmpeg package ships, and to small GIFs by Pillow.

MuJoCo renders offscreen through OpenGL, whose backend it picks from `MUJOCO_GL` when it is
first imported: `configure_gl` sets it (and PyOpenGL's platform) before that happens.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rl.core.files import atomic_path

log = logging.getLogger("rl")

# What each backend needs on Debian/Ubuntu, for the error message.
GL_PACKAGES = {
    "egl": "libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 (Mesa's software EGL; on a GPU "
    "machine the driver's EGL, e.g. the NVIDIA runtime with --nv)",
    "osmesa": "libosmesa6",
    "glfw": "a display (DISPLAY) and libglfw3",
}


class RenderUnavailable(RuntimeError):
    """MuJoCo could not render; the message names the missing piece and the fix."""


def configure_gl(vcfg: dict) -> str:
    """Choose MuJoCo's OpenGL backend before mujoco is imported; MUJOCO_GL in the
    environment wins over `video.mujoco_gl`. Returns the backend in force."""
    backend = os.environ.get("MUJOCO_GL") or vcfg["mujoco_gl"]
    if backend not in GL_PACKAGES:
        raise RenderUnavailable(
            f"MUJOCO_GL={backend} (from the environment) is not an OpenGL backend MuJoCo can "
            f"render videos with here: use egl (headless: GPU or Mesa), osmesa (software) or "
            f"glfw (a display), or unset it to use video.mujoco_gl ({vcfg['mujoco_gl']})."
        )
    if "mujoco" in sys.modules and os.environ.get("MUJOCO_GL", "") != backend:
        raise RenderUnavailable(
            f"mujoco was imported before its OpenGL backend was chosen (MUJOCO_GL is "
            f"'{os.environ.get('MUJOCO_GL', '')}', the config asks for '{backend}'): set "
            f"MUJOCO_GL={backend} in the environment before starting Python."
        )
    os.environ["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def _ignore_half_built_viewer(unraisable) -> None:
    """gymnasium's OffScreenViewer.__del__ fails on a viewer whose OpenGL context never
    started, and Python prints that traceback beside our message: drop that one."""
    exc = unraisable.exc_value
    if isinstance(exc, AttributeError) and "opengl_context" in str(exc):
        return
    sys.__unraisablehook__(unraisable)


def render_error(exc: BaseException, on_error: str) -> RenderUnavailable:
    sys.unraisablehook = _ignore_half_built_viewer
    backend = os.environ.get("MUJOCO_GL", "(unset)")
    needs = GL_PACKAGES.get(backend, "a working OpenGL backend")
    why = f"{type(exc).__name__}: {str(exc).strip().rstrip('.')[:300]}"
    return RenderUnavailable(
        f"MuJoCo cannot render offscreen with MUJOCO_GL={backend} ({why}). The evaluation "
        f"videos need {needs}. Fix: on Debian/Ubuntu `apt-get install libegl1 libegl-mesa0 "
        f"libgl1-mesa-dri libopengl0` for MUJOCO_GL=egl, or `apt-get install libosmesa6` "
        f"and MUJOCO_GL=osmesa (or video.mujoco_gl: osmesa); or go on without videos: "
        f"video.enabled: false, or video.on_error: skip to warn and skip them (now: "
        f"{on_error})."
    )


def check_frames(frames: Sequence[np.ndarray], what: str) -> None:
    """Refuse to encode a video that shows nothing: every frame blank (one colour) or all
    frames the same image means the renderer did not draw the scene."""
    if len(frames) == 0:
        raise RenderUnavailable(f"{what}: no frame was rendered.")
    first = frames[0]
    if first.ndim != 3 or first.shape[-1] != 3 or first.dtype != np.uint8:
        raise RenderUnavailable(
            f"{what}: frames are {first.dtype} of shape {first.shape}, not RGB uint8 images."
        )
    blank = [i for i, f in enumerate(frames) if int(f.max()) == int(f.min())]
    if blank:
        raise RenderUnavailable(
            f"{what}: frame {blank[0]} (and {len(blank) - 1} more) is a single colour "
            f"({int(frames[blank[0]].max())}): the renderer did not draw the scene. Check "
            f"the OpenGL backend (MUJOCO_GL={os.environ.get('MUJOCO_GL', '')})."
        )
    if len(frames) > 1 and all(np.array_equal(first, f) for f in frames[1:]):
        raise RenderUnavailable(
            f"{what}: all {len(frames)} frames are the same image: nothing moved, or the "
            f"renderer returned a stale buffer."
        )


def caption(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """A copy of `frame` with `lines` of text drawn in its top-left corner."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    size = max(8, frame.shape[0] // 16)
    font = ImageFont.load_default(size=size)
    y = 2
    for line in lines:
        draw.text((3, y), line, fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=0)
        y += size + 2
    return np.asarray(image)


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """H.264 MP4 (yuv420p, moov atom first so browsers start playing at once), atomically."""
    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    with atomic_path(path, keep_suffix=True) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=2,
            output_params=["-movflags", "+faststart"],
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    return Path(path)


def gif_frames(
    frames: Sequence[np.ndarray], fps: float, vcfg: dict
) -> tuple[list[np.ndarray], float]:
    """The GIF's frames (every k-th, at most gif_max_seconds, scaled by gif_scale) and its
    frame rate."""
    from PIL import Image

    step = max(1, round(fps / vcfg["gif_fps"]))
    gif_fps = fps / step
    keep = list(frames[::step])[: max(1, int(vcfg["gif_max_seconds"] * gif_fps))]
    height, width = keep[0].shape[:2]
    new_w = max(1, round(width * vcfg["gif_scale"]))
    new_h = max(1, round(height * vcfg["gif_scale"]))
    if new_w != width:
        keep = [
            np.asarray(Image.fromarray(f).resize((new_w, new_h), Image.Resampling.LANCZOS))
            for f in keep
        ]
    return keep, gif_fps


def write_gif(path: str | Path, frames: Sequence[np.ndarray], fps: float, vcfg: dict) -> Path:
    """A small looping GIF (Pillow), atomically."""
    from PIL import Image

    keep, gif_fps = gif_frames(frames, fps, vcfg)
    images = [Image.fromarray(f) for f in keep]
    with atomic_path(path, keep_suffix=True) as tmp:
        images[0].save(
            tmp,
            save_all=True,
            append_images=images[1:],
            duration=round(1000 / gif_fps),
            loop=0,
            optimize=True,
        )
    return Path(path)


def probe(path: str | Path) -> dict:
    """Codec, size, frame count and duration of a video file, read back by ffmpeg."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = sum(1 for _ in reader)
    reader.close()
    return {
        "codec": meta.get("codec"),
        "size": tuple(meta["size"]),
        "fps": meta.get("fps"),
        "frames": frames,
        "duration_s": meta.get("duration"),
    }


EPISODE_VIDEOS = ("first", "worst")


def episode_video_paths(out_dir: str | Path) -> dict[str, Path]:
    """The files evaluate_ppo writes for its videos (the Snakefile declares the same)."""
    out = Path(out_dir)
    paths = {"manifest": out / "videos.json"}
    for name in EPISODE_VIDEOS:
        paths[f"{name}_mp4"] = out / f"episode-{name}.mp4"
        paths[f"{name}_gif"] = out / f"episode-{name}.gif"
    return paths


def write_episode_videos(recordings: dict, out_dir: str | Path, vcfg: dict, title: str) -> dict:
    """Check the raw frames, caption copies of them (return, frame count) and write each
    recording as MP4 and GIF; returns the manifest rows (sizes and costs included)."""
    import time

    paths = episode_video_paths(out_dir)
    rows = {}
    for name, rec in recordings.items():
        frames = rec["frames"]
        check_frames(frames, f"the {name} evaluation episode's video")
        n = len(frames)
        head = f"{name} episode ({rec['episode']}): return {rec['return']:.1f}"
        shown = [
            caption(f, [title, head, f"frame {i + 1}/{n} of {rec['length']} steps"])
            for i, f in enumerate(frames)
        ]
        t0 = time.perf_counter()
        mp4 = write_mp4(paths[f"{name}_mp4"], shown, vcfg["fps"])
        gif = write_gif(paths[f"{name}_gif"], shown, vcfg["fps"], vcfg)
        rows[name] = {
            "episode": rec["episode"],
            "return": rec["return"],
            "length": rec["length"],
            "frames": n,
            "width": int(frames[0].shape[1]),
            "height": int(frames[0].shape[0]),
            "fps": vcfg["fps"],
            "render_ms_per_frame": round(rec["render_ms_per_frame"], 3),
            "render_s": round(rec["render_ms_per_frame"] * n / 1000, 3),
            "encode_s": round(time.perf_counter() - t0, 3),
            "mp4": mp4.name,
            "mp4_bytes": mp4.stat().st_size,
            "gif": gif.name,
            "gif_bytes": gif.stat().st_size,
        }
    return rows


def _trajectories(evals, vcfg: dict) -> tuple[list, int]:
    """Each start's rows of one seed's eval_trajectories.csv, in step order, and the number
    of steps to animate."""
    required = {"start", "step", "time_s", "angle", "torque"}
    if not required <= set(evals.columns):
        raise ValueError(
            f"The pendulum trajectories lack the columns {sorted(required - set(evals.columns))}"
            f": they are not an eval_trajectories.csv of `python -m rl train-pendulum`. "
            f"Rerun train_pendulum for this seed."
        )
    runs = [evals[evals["start"] == s].sort_values("step") for s in sorted(evals["start"].unique())]
    steps = min(len(r) for r in runs)
    if steps < 2:
        raise ValueError("The pendulum trajectories hold fewer than 2 steps: nothing to animate.")
    return runs, min(steps, vcfg["max_frames"] or steps)


def _pendulum_frames(runs: list, steps: int, physics: dict, vcfg: dict, title: str, dpi: int):
    """The animation's figure and its `draw(i)` (frame i: rods, torque traces, clock)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    length, max_torque = physics["l"], physics["max_torque"]
    colours = sns.color_palette("colorblind", len(runs))
    with sns.axes_style("whitegrid"):
        fig, (ax, axt) = plt.subplots(
            1,
            2,
            figsize=(vcfg["animation_width"] / dpi, vcfg["animation_height"] / dpi),
            dpi=dpi,
            gridspec_kw={"width_ratios": [1, 1.5]},
            layout="constrained",
        )
    fig.suptitle(title, fontsize=9)
    reach = 1.15 * length
    ax.set(xlim=(-reach, reach), ylim=(-reach, reach), aspect="equal", xticks=[], yticks=[])
    ax.plot([0], [0], "ko", markersize=3)
    clock = ax.text(0.03, 0.95, "", transform=ax.transAxes, fontsize=8, va="top")
    t_end = max(float(r["time_s"].iloc[steps - 1]) for r in runs)
    axt.set(xlim=(0, t_end), ylim=(-1.1 * max_torque, 1.1 * max_torque))
    axt.set_xlabel("time (s)", fontsize=8)
    axt.set_ylabel("torque (N m)", fontsize=8)
    axt.tick_params(labelsize=7)
    rods, traces = [], []
    for colour, run in zip(colours, runs, strict=True):
        (rod,) = ax.plot([], [], "-o", color=colour, linewidth=2, markersize=5)
        axt.plot(run["time_s"][:steps], run["torque"][:steps], color=colour, alpha=0.15)
        (trace,) = axt.plot([], [], color=colour, linewidth=1.2)
        rods.append(rod)
        traces.append(trace)
    angle = [r["angle"].to_numpy() for r in runs]
    torque = [r["torque"].to_numpy() for r in runs]
    time_s = [r["time_s"].to_numpy() for r in runs]

    def draw(i):
        for k in range(len(runs)):
            th = angle[k][i]
            rods[k].set_data([0, length * np.sin(th)], [0, length * np.cos(th)])
            traces[k].set_data(time_s[k][: i + 1], torque[k][: i + 1])
        clock.set_text(f"t = {time_s[0][i]:.2f} s")
        return [*rods, *traces, clock]

    return fig, draw


def animate_pendulum(
    evals, physics: dict, vcfg: dict, mp4: str | Path, gif: str | Path, title: str
) -> dict:
    """The learned controller from each evaluation start: the pendulums (0 = upright) on
    the left, the applied torque over time on the right, one colour per start as in the
    figure; one frame per simulation step. `evals` is one seed's eval_trajectories.csv.
    Written with matplotlib's animation writers: FFMpegWriter (the ffmpeg of
    imageio-ffmpeg) for the MP4 and PillowWriter for the GIF. Returns the manifest row."""
    import time

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import animation

    runs, steps = _trajectories(evals, vcfg)
    dpi = 100
    fig, draw = _pendulum_frames(runs, steps, physics, vcfg, title, dpi)
    draw(0)
    fig.canvas.draw()
    fig.set_layout_engine("none")  # laid out once: the axes do not move between frames
    matplotlib.rcParams["animation.ffmpeg_path"] = ffmpeg_exe()
    t0 = time.perf_counter()
    movie = animation.FuncAnimation(fig, draw, frames=steps, blit=False)
    writer = animation.FFMpegWriter(
        fps=vcfg["fps"], codec="h264", extra_args=["-movflags", "+faststart"]
    )
    with atomic_path(mp4, keep_suffix=True) as tmp:
        movie.save(tmp, writer=writer, dpi=dpi)
    mp4_s = time.perf_counter() - t0
    step = max(1, round(vcfg["fps"] / vcfg["gif_fps"]))
    gif_fps = vcfg["fps"] / step
    frames = list(range(0, steps, step))[: max(1, int(vcfg["gif_max_seconds"] * gif_fps))]
    small = animation.FuncAnimation(fig, draw, frames=frames, blit=False)
    with atomic_path(gif, keep_suffix=True) as tmp:
        small.save(tmp, writer=animation.PillowWriter(fps=gif_fps), dpi=dpi * vcfg["gif_scale"])
    plt.close(fig)
    return {
        "starts": len(runs),
        "frames": steps,
        "fps": vcfg["fps"],
        "width": vcfg["animation_width"],
        "height": vcfg["animation_height"],
        "mp4": Path(mp4).name,
        "mp4_bytes": Path(mp4).stat().st_size,
        "mp4_s": round(mp4_s, 3),
        "gif": Path(gif).name,
        "gif_bytes": Path(gif).stat().st_size,
    }

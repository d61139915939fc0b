"""Figures from aggregate tables alone: variants overlaid, byte-identical when redrawn."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rl.analysis import results
from rl.core import config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _tidy(variants=("tuned", "tutorial"), seeds=(0, 1, 2), batches=5):
    rng = np.random.default_rng(0)
    train, evals, episodes = [], [], []
    for k, variant in enumerate(variants):
        for seed in seeds:
            for b in range(1, batches + 1):
                frames = 1000 * b
                level = (k + 1) * 1000 * b + rng.normal(0, 300)
                train.append(
                    {
                        "variant": variant,
                        "seed": seed,
                        "frames": frames,
                        "train_reward_mean": level / 1000,
                        "train_max_episode_length": 10 * b,
                        "frames_per_s": 2000.0,
                        "wall_s": 0.5 * b,
                    }
                )
                evals.append(
                    {
                        "variant": variant,
                        "seed": seed,
                        "frames": frames,
                        "eval_return": level,
                        "eval_episode_length": 10 * b,
                    }
                )
            episodes += [
                {"variant": variant, "seed": seed, "return": level + i, "length": 100}
                for i in range(3)
            ]
    return {
        "ppo_train": pd.DataFrame(train),
        "ppo_train_eval": pd.DataFrame(evals),
        "ppo_eval_episodes": pd.DataFrame(episodes),
    }


@pytest.fixture
def cfg(ci_config):
    ci_config["variants"] = [{"name": "tuned"}, {"name": "tutorial", "studies": ["ppo"]}]
    ci_config["aggregate"] = {"bootstrap_samples": 300, "threshold": 6000}
    return config.validate(ci_config)


def _draw(cfg, agg_dir: Path, out: Path) -> dict[str, bytes]:
    names = ["ppo.png", "ppo.pdf", "ppo_statistics.png", "ppo_statistics.pdf"]
    results.plot_ppo(cfg, agg_dir, *(out / n for n in names))
    return {n: (out / n).read_bytes() for n in names}


def test_figures_are_byte_identical_when_redrawn(tmp_path, cfg):
    agg_dir = tmp_path / "aggregate"
    tables = results.aggregate_ppo(cfg, _tidy(), agg_dir)
    first = _draw(cfg, agg_dir, tmp_path / "a")
    # the statistics are recomputed too: the same bootstrap seed gives the same tables
    again = results.aggregate_ppo(cfg, _tidy(), tmp_path / "aggregate2")
    for stem, frame in tables.items():
        pd.testing.assert_frame_equal(frame, again[stem])
        assert (agg_dir / f"{stem}.csv").read_bytes() == (
            tmp_path / "aggregate2" / f"{stem}.csv"
        ).read_bytes()
    second = _draw(cfg, tmp_path / "aggregate2", tmp_path / "b")
    assert first == second
    assert b"CreationDate" not in first["ppo.pdf"] and b"matplotlib" not in first["ppo.png"]


def test_statistics_tables_hold_both_variants_and_the_comparison(tmp_path, cfg):
    tables = results.aggregate_ppo(cfg, _tidy(), tmp_path)
    comparison = tables["ppo_comparison"].iloc[0]
    assert (comparison["x"], comparison["y"]) == ("tuned", "tutorial")
    # the tutorial variant's returns are twice the tuned one's: tuned never improves on it
    assert comparison["probability_of_improvement"] == pytest.approx(0.0)
    profile = tables["ppo_performance_profile"]
    assert set(profile["variant"]) == {"tuned", "tutorial"}
    assert (profile.groupby("variant")["tau"].count() == 101).all()
    reached = tables["ppo_frames_to_threshold"].set_index(["variant", "seed"])
    assert reached["reached"].sum() >= 3
    assert not reached.loc[("tuned", 0), "reached"]


def test_variants_get_one_colour_each_in_config_order():
    from rl.analysis.plotting import variant_palette

    palette = variant_palette(["b", "a", "z"], order=["z", "a", "b"])
    assert list(palette) == ["z", "a", "b"] and len(set(palette.values())) == 3


def test_one_variant_shows_each_seeds_seconds_to_the_threshold(tmp_path, ci_config):
    """With nothing to compare, the probability-of-improvement panel shows each seed's
    training seconds to the threshold instead (a seed that never reached it is named)."""
    from rl.analysis.plotting import statistics_figure
    from rl.analysis.thresholds import seconds_to_threshold

    ci_config["aggregate"] = {"bootstrap_samples": 300, "threshold": 3000}
    tidy = _tidy(("default",))
    tables = results.aggregate_ppo(config.validate(ci_config), tidy, tmp_path)
    thresholds = tables["ppo_frames_to_threshold"]
    assert tables["ppo_comparison"].empty and thresholds["reached"].all()
    seconds = seconds_to_threshold(thresholds, tidy["ppo_train"]).to_numpy().copy()
    # the level reaches 3000 at the third or fourth batch of 5: 0.5 s per batch
    assert set(seconds) <= {1.5, 2.0}
    assert (seconds * 2000 == thresholds["frames_to_threshold"]).all()
    seconds[2] = np.nan  # seed 2 never got there
    thresholds = thresholds.assign(seconds_to_threshold=seconds)
    fig = statistics_figure(
        tables["ppo_summary"], tables["ppo_performance_profile"], tables["ppo_comparison"],
        thresholds, "t", (8, 6), 50,
    )  # fmt: skip
    panel = fig.axes[2]
    assert panel.get_title() == "Seconds to return >= 3000 (one variant: no comparison)"
    bars = [bar.get_width() for bar in panel.patches]
    assert bars == [*seconds[:2], 0]
    assert [t.get_text() for t in panel.get_yticklabels()] == ["seed 0", "seed 1", "seed 2"]
    assert [t.get_text().strip() for t in panel.texts][-1] == "not reached"

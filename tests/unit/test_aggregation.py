import numpy as np
import pandas as pd
import pytest

from rl.analysis import aggregation as agg
from rl.analysis import thresholds


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    small = rng.normal(10, 2, size=5)
    large = rng.normal(10, 2, size=500)
    m1, lo1, hi1 = agg.bootstrap_ci(small, n_boot=2000)
    m2, lo2, hi2 = agg.bootstrap_ci(large, n_boot=2000)
    assert lo1 <= m1 <= hi1 and lo2 <= m2 <= hi2
    assert m1 == pytest.approx(small.mean())
    assert (hi2 - lo2) < (hi1 - lo1)
    # a 95% interval of the mean of N(10, 2) with n=500 is about +-0.18
    assert hi2 - lo2 == pytest.approx(2 * 1.96 * 2 / np.sqrt(500), rel=0.25)


def test_bootstrap_ci_edge_cases():
    assert agg.bootstrap_ci([3.0]) == (3.0, 3.0, 3.0)
    assert all(np.isnan(v) for v in agg.bootstrap_ci([]))
    assert agg.bootstrap_ci([1.0, np.nan, 3.0])[0] == 2.0
    assert agg.bootstrap_ci([1, 2, 3], seed=4) == agg.bootstrap_ci([1, 2, 3], seed=4)


def _train_table(seeds=(0, 1, 2), batches=4):
    rows = []
    for seed in seeds:
        for b in range(1, batches + 1):
            rows.append(
                {
                    "variant": "default",
                    "seed": seed,
                    "frames": 100 * b,
                    "train_reward_mean": b + seed,
                    "train_max_episode_length": 10 * b,
                    "frames_per_s": 1000.0 + seed,
                }
            )
    return pd.DataFrame(rows)


def test_summarise_curves_has_one_row_per_step_and_metric():
    tidy = _train_table()
    out = agg.summarise_curves(
        tidy,
        "frames",
        ["train_reward_mean", "train_max_episode_length"],
        agg.Bootstrap(200, 0.95, 0),
    )
    assert len(out) == 4 * 2
    assert set(out.columns) == {
        "variant",
        "frames",
        "metric",
        "mean",
        "ci_low",
        "ci_high",
        "n_seeds",
        "seeds",
        "confidence",
        "bootstrap_resamples",
        "bootstrap_seed",
        "bootstrap_method",
    }
    assert (out["seeds"] == "0 1 2").all() and (out["bootstrap_resamples"] == 200).all()
    first = out[(out.frames == 100) & (out.metric == "train_reward_mean")].iloc[0]
    assert first["mean"] == pytest.approx(2.0)  # seeds give 1, 2, 3
    assert first["n_seeds"] == 3
    assert (out["ci_low"] <= out["mean"]).all() and (out["mean"] <= out["ci_high"]).all()


def test_final_summary_uses_each_seeds_last_value():
    train = _train_table()
    train_eval = train.rename(columns={"train_reward_mean": "eval_return"})[
        ["variant", "seed", "frames", "eval_return"]
    ]
    episodes = pd.DataFrame(
        {
            "variant": "default",
            "seed": [0, 0, 1, 1, 2, 2],
            "return": [1.0, 3.0, 5.0, 5.0, 9.0, 9.0],
            "length": 10,
        }
    )
    out = agg.final_summary(train, train_eval, episodes, agg.Bootstrap(200, 0.95, 0), 7.0)
    row = out.set_index("quantity").loc["eval_return"]
    assert row["mean"] == pytest.approx((2 + 5 + 9) / 3)
    assert row["per_seed"] == "2 5 9"
    assert row["seeds"] == "0 1 2" and row["n_seeds"] == 3
    assert row["iqm_ci_low"] <= row["iqm"] <= row["iqm_ci_high"]
    last = out.set_index("quantity").loc["final_train_reward_mean"]
    assert last["mean"] == pytest.approx(5.0)  # batches 4 -> 4, 5, 6
    # eval returns during training peak at 4, 5, 6: no seed reaches the threshold 7
    reached = out.set_index("quantity").loc["reached_threshold"]
    assert reached["per_seed"] == "0 0 0"


def test_read_tables_names_missing_file_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        agg.read_tables([tmp_path / "missing.csv"], ["seed"])
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="lacks the columns"):
        agg.read_tables([bad], ["seed"])


def test_bootstrap_is_scipys_percentile_interval_and_reproducible():
    from scipy import stats

    x = np.array([3.0, 9.0, 4.0, 8.0, 5.0, 1.0])
    mine = agg.Bootstrap(1000, 0.9, 7).interval([x], np.mean)
    ref = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=1000,
        confidence_level=0.9,
        method="percentile",
        rng=np.random.default_rng(7),
    ).confidence_interval
    assert mine[1] == pytest.approx(ref.low) and mine[2] == pytest.approx(ref.high)
    assert agg.Bootstrap(1000, 0.9, 7).interval([x], np.mean)[1] == mine[1]
    assert agg.Bootstrap(1000, 0.9, 8).interval([x], np.mean)[1] != mine[1]


def test_iqm_is_the_mean_of_the_middle_half():
    # 8 values: the 2 lowest and 2 highest are cut
    assert agg.iqm(np.array([-100.0, 0, 1, 2, 3, 4, 5, 1000])) == pytest.approx(2.5)


def _scores(values: dict[str, list[float]]) -> pd.Series:
    idx = [(v, s) for v, xs in values.items() for s in range(len(xs))]
    flat = [x for xs in values.values() for x in xs]
    return pd.Series(flat, index=pd.MultiIndex.from_tuples(idx, names=["variant", "seed"]))


def test_probability_of_improvement_matches_pair_counting_and_has_a_ci():
    scores = _scores({"a": [5.0, 6.0, 7.0, 7.0], "b": [1.0, 7.0, 2.0]})
    out = agg.compare(scores, ["a", "b"], agg.Bootstrap(500, 0.95, 0), "eval_return")
    row = out.iloc[0]
    x, y = [5.0, 6.0, 7.0, 7.0], [1.0, 7.0, 2.0]
    pairs = [(xi > yj) + 0.5 * (xi == yj) for xi in x for yj in y]
    assert row["probability_of_improvement"] == pytest.approx(np.mean(pairs))
    assert row["ci_low"] <= row["probability_of_improvement"] <= row["ci_high"]
    assert 0 <= row["ci_low"] and row["ci_high"] <= 1
    assert (row["seeds_x"], row["seeds_y"], row["n_seeds_x"]) == ("0 1 2 3", "0 1 2", 4)
    assert row["bootstrap_resamples"] == 500 and row["bootstrap_seed"] == 0
    swapped = agg.compare(scores, ["b", "a"], agg.Bootstrap(500, 0.95, 0), "eval_return")
    assert swapped.iloc[0]["probability_of_improvement"] == pytest.approx(1 - np.mean(pairs))


def test_performance_profile_counts_seeds_above_each_threshold():
    scores = _scores({"a": [10.0, 20.0, 30.0, 40.0]})
    out = agg.performance_profile(scores, agg.Bootstrap(300, 0.95, 0), points=5)
    assert out["tau"].tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert out["fraction"].tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert (out["ci_low"] <= out["fraction"]).all() and (out["fraction"] <= out["ci_high"]).all()
    assert (out["n_seeds"] == 4).all()


def test_frames_to_threshold_per_seed():
    train_eval = pd.DataFrame(
        {
            "variant": "v",
            "seed": [0, 0, 0, 1, 1, 1],
            "frames": [100, 200, 300, 100, 200, 300],
            "eval_return": [50.0, 9200.0, 9300.0, 10.0, 20.0, 30.0],
        }
    )
    episodes = pd.DataFrame({"variant": "v", "seed": [0, 1], "return": [9350.0, 40.0]})
    out = thresholds.frames_to_threshold(train_eval, episodes, 9100).set_index("seed")
    assert out.loc[0, "frames_to_threshold"] == 200 and out.loc[0, "solved_at_end"]
    assert np.isnan(out.loc[1, "frames_to_threshold"]) and not out.loc[1, "reached"]


def test_comparison_pair_defaults_to_the_first_two_and_names_a_missing_one():
    assert agg.comparison_pair(None, ["a", "b", "c"]) == ["a", "b"]
    assert agg.comparison_pair(None, ["a"]) is None
    with pytest.raises(ValueError, match="'z'"):
        agg.comparison_pair(["a", "z"], ["a", "b"])

import numpy as np
import pandas as pd
import pytest

from rl import aggregation as agg


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
        n_boot=200,
        confidence=0.95,
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
    }
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
    out = agg.final_summary(train, train_eval, episodes, n_boot=200, confidence=0.95)
    row = out.set_index("quantity").loc["eval_return"]
    assert row["mean"] == pytest.approx((2 + 5 + 9) / 3)
    assert row["per_seed"] == "2 5 9"
    last = out.set_index("quantity").loc["final_train_reward_mean"]
    assert last["mean"] == pytest.approx(5.0)  # batches 4 -> 4, 5, 6


def test_read_tables_names_missing_file_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        agg.read_tables([tmp_path / "missing.csv"], ["seed"])
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="lacks the columns"):
        agg.read_tables([bad], ["seed"])

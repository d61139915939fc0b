"""PPO trained in-process for real: torch.compile, resuming from any checkpoint (one and two
collector processes), two collector processes' determinism and episode continuity."""

import pandas as pd
import pytest
import torch

from rl.ppo.collect import Collection
from rl.ppo.train import build, train

from support.training import assert_same_run, table


class Killed(Exception):
    """Stands for a kill between a checkpoint and the next one."""


@pytest.mark.parametrize("workers", [1, 2])
def test_collection_continues_episodes_across_batches_and_a_reload(cfg, stats, workers):
    """One collector for the run: a batch starts where the last ended (step counts go on,
    no reset), and a collection loaded with another's state collects its next batch."""
    torch.set_num_threads(1)
    cfg["ppo"]["collector_workers"] = workers
    torch.manual_seed(0)
    env, actor, _ = build(cfg, 0, stats, torch.device("cpu"))
    collection = Collection(cfg, 0, stats, env, actor, torch.device("cpu"))
    try:
        (first,) = collection.batches(1)
        saved = collection.state_dict()
        rng = torch.get_rng_state()
        (second,) = collection.batches(1)
    finally:
        collection.shutdown()
    last = first["next"][:, -1]
    carried = torch.where(last["done"], 0, last["step_count"])
    assert torch.equal(second["step_count"][:, 0], carried)
    assert (second["step_count"][:, 0] > 0).all(), "the episodes went on"

    torch.manual_seed(5)
    env, actor2, _ = build(cfg, 7, stats, torch.device("cpu"))
    actor2.load_state_dict(actor.state_dict())
    other = Collection(cfg, 7, stats, env, actor2, torch.device("cpu"))
    try:
        other.load_state_dict(saved)
        torch.set_rng_state(rng)
        (again,) = other.batches(1)
    finally:
        other.shutdown()
    # trajectory ids (the workers' collectors track them) are counters, not part of the data
    ids = ("collector", "traj_ids")
    assert (again.exclude(ids) == second.exclude(ids)).all()


def test_compiled_loop_learns_the_same_way_and_is_deterministic(cfg, stats, tmp_path):
    """ppo.compile: the compiled loss and policy give the eager run's numbers up to float
    rounding in the first batch, and the same numbers twice."""
    torch.set_num_threads(1)
    from torch._dynamo.utils import counters

    cfg["ppo"]["total_frames"] = 1024  # two batches
    eager = train(cfg, 0, stats, tmp_path / "eager")
    cfg["ppo"]["compile"] = True
    graphs = counters["stats"]["unique_graphs"]
    a = train(cfg, 0, stats, tmp_path / "a")
    assert counters["stats"]["unique_graphs"] > graphs, "torch.compile traced the loop"
    b = train(cfg, 0, stats, tmp_path / "b")
    pd.testing.assert_frame_equal(table(a, "metrics"), table(b, "metrics"))
    first = [table(r, "metrics").iloc[0] for r in (eager, a)]
    assert first[0]["train_reward_mean"] == first[1]["train_reward_mean"], "same first batch"
    for key in ("loss_objective", "loss_critic", "grad_norm"):
        assert first[1][key] == pytest.approx(first[0][key], rel=1e-3, abs=1e-5), key


@pytest.mark.parametrize("workers", [1, 2])
def test_resume_from_any_checkpoint_reproduces_the_uninterrupted_run(
    cfg, stats, tmp_path, caplog, workers
):
    """From the segment checkpoint (1024 of 2048 frames) and from minute-triggered ones
    inside a segment (a checkpoint after every batch, the run stopped after 512 or 1536
    frames): the resumed run continues the episodes in flight and ends as the
    uninterrupted one, bit for bit. workers 2: the state of two collector processes."""
    torch.set_num_threads(1)
    cfg["ppo"]["collector_workers"] = workers
    first = train(cfg, 0, stats, tmp_path / "segments")
    assert first["checkpoint"].exists()  # the segment checkpoint, kept by train()
    caplog.set_level("INFO", logger="rl")
    again = train(cfg, 0, stats, tmp_path / "segments")
    assert "resuming from checkpoint" in caplog.text and "at frame 1024" in caplog.text
    assert_same_run(again, first)

    cfg["ppo"]["checkpoint_interval_minutes"] = 1e-9  # after every batch
    for stop_batch in (2, 4):  # the checkpoint before it: mid first segment, mid second

        def stop(row, _eval, stop_batch=stop_batch):
            if row["batch"] == stop_batch:
                raise Killed

        out = tmp_path / f"minutes-{stop_batch}"
        with pytest.raises(Killed):
            train(cfg, 0, stats, out, on_batch=stop)
        caplog.clear()
        resumed = train(cfg, 0, stats, out)
        assert f"at frame {(stop_batch - 1) * 512}" in caplog.text
        assert_same_run(resumed, first)


def test_two_collector_processes_are_deterministic_and_collect_every_copy(cfg, stats, tmp_path):
    torch.set_num_threads(1)
    cfg["ppo"]["collector_workers"] = 2
    a = train(cfg, 0, stats, tmp_path / "a")
    b = train(cfg, 0, stats, tmp_path / "b")
    pd.testing.assert_frame_equal(table(a, "metrics"), table(b, "metrics"))
    pd.testing.assert_frame_equal(table(a, "eval"), table(b, "eval"))
    cfg["ppo"]["collector_workers"] = 1
    one = train(cfg, 0, stats, tmp_path / "one")
    # the same task and budget, other random streams
    assert len(table(one, "metrics")) == len(table(a, "metrics"))
    assert not table(one, "metrics").equals(table(a, "metrics"))


def test_overlapped_collection_is_deterministic_and_resumes_bit_for_bit(
    cfg, stats, tmp_path, caplog
):
    """ppo.overlap (rl/ppo/overlap.py): two runs equal; a run killed after a checkpoint
    taken with a batch in flight resumes and ends as the uninterrupted one, bit for bit;
    and its numbers are not the non-overlapped loop's (its batches are staler)."""
    torch.set_num_threads(1)
    cfg["ppo"].update(overlap=True, checkpoint_interval_minutes=1e-9)  # after every batch
    first = train(cfg, 0, stats, tmp_path / "a")
    assert_same_run(train(cfg, 0, stats, tmp_path / "b"), first)

    def stop(row, _eval):
        if row["batch"] == 3:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, 0, stats, tmp_path / "killed", on_batch=stop)
    caplog.set_level("INFO", logger="rl")
    resumed = train(cfg, 0, stats, tmp_path / "killed")
    assert "resuming from checkpoint" in caplog.text and "at frame 1024" in caplog.text
    assert_same_run(resumed, first)

    cfg["ppo"]["overlap"] = False
    plain = train(cfg, 0, stats, tmp_path / "plain")
    assert not table(plain, "metrics").equals(table(first, "metrics"))

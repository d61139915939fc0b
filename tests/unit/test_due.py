"""The PPO loop's triggers (rl.ppo.due): asking changes nothing, and the checkpoints fall at
the end of each checkpoint segment, the first batch to reach a multiple of the interval."""

from rl.ppo.due import Due

PPO = {
    "eval_interval_frames": 1000,
    "total_frames": 3000,
    "checkpoint_interval_frames": 1000,
    "checkpoint_interval_minutes": 60.0,
}


def test_asking_whether_an_evaluation_is_due_changes_nothing():
    due = Due(PPO, 0, report_s=3600.0)
    assert not due.evaluation(900)
    assert due.evaluation(1200) and due.evaluation(1200), "asked twice, due twice"
    due.evaluated()
    assert not due.evaluation(1500) and due.evaluation(2000)
    assert due.evaluation(3000), "always at the end of the budget"


def test_asking_whether_a_report_is_due_changes_nothing():
    due = Due(PPO, 0, report_s=0.0)
    assert due.report() and due.report()
    due = Due(PPO, 0, report_s=3600.0)
    assert not due.report()
    due.last_report -= 3600.0
    assert due.report() and due.report()
    due.reported()
    assert not due.report()


def test_checkpoints_at_segment_ends_in_batches_of_another_size():
    """Batches of 300 frames against a 1,000-frame interval: the segment from 0 ends at 1,200,
    the next (to 2,000) at 2,100; none at the end of the budget."""
    due, at = Due(PPO, 0, report_s=0.0), []
    for frames in range(300, 3001, 300):
        if due.checkpoint(frames):
            assert due.checkpoint(frames), "asking twice changes nothing"
            due.checkpointed(frames)
            at.append(frames)
    assert at == [1200, 2100]


def test_the_minutes_trigger_checkpoints_between_segment_ends():
    due = Due(PPO, 1200, report_s=0.0)  # resumed at 1,200: the segment ends at 2,000
    assert not due.checkpoint(1500)
    due.last_checkpoint -= 3601.0
    assert due.checkpoint(1500)
    due.checkpointed(1500)
    assert not due.checkpoint(1800) and due.checkpoint(2100)
    due.last_checkpoint -= 3601.0
    assert not due.checkpoint(3000), "never at the end of the budget"

"""When the PPO loop (rl.ppo.train) checkpoints, evaluates and reports: the frame-count
checkpoint segments, and the clock- and frame-driven triggers checked after each batch."""

from __future__ import annotations

import time


def segment_frames(state: dict, ppo: dict) -> tuple[int, int]:
    """(end, frames to collect) of the checkpoint segment that starts at the frames done:
    segments end on multiples of checkpoint_interval_frames (or the budget), in batches."""
    interval, batch = ppo["checkpoint_interval_frames"], ppo["frames_per_batch"]
    end = min((state["frames"] // interval + 1) * interval, ppo["total_frames"])
    return end, -(-(end - state["frames"]) // batch) * batch


class Due:
    """When the loop evaluates (every eval_interval_frames and at the end), when it
    checkpoints between segment ends (every checkpoint_interval_minutes) and when it reports
    the batches' metrics (every `report_s` seconds, and before either of the other two)."""

    def __init__(self, ppo: dict, frames: int, report_s: float):
        self.every, self.total = ppo["eval_interval_frames"], ppo["total_frames"]
        self.next_eval = (frames // self.every + 1) * self.every
        self.minutes = ppo["checkpoint_interval_minutes"]
        self.last_checkpoint = self.last_report = time.monotonic()
        self.report_s = report_s

    def evaluation(self, frames: int) -> bool:
        if frames >= self.next_eval or frames >= self.total:
            self.next_eval += self.every
            return True
        return False

    def checkpoint(self) -> bool:
        return (time.monotonic() - self.last_checkpoint) / 60 >= self.minutes

    def checkpointed(self) -> None:
        self.last_checkpoint = time.monotonic()

    def report(self) -> bool:
        if time.monotonic() - self.last_report >= self.report_s:
            self.last_report = time.monotonic()
            return True
        return False

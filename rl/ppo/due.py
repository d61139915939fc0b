"""When the PPO loop (rl.ppo.train) evaluates, checkpoints and reports, asked after each
batch: the questions only look (`evaluation`, `checkpoint`, `report`), and the loop says
what it did (`evaluated`, `checkpointed`, `reported`)."""

from __future__ import annotations

import time


def segment_end(frames: int, ppo: dict) -> int:
    """Where the checkpoint segment that starts at `frames` ends: the next multiple of
    checkpoint_interval_frames, or the budget. The segment's last batch is the first to
    reach it."""
    interval = ppo["checkpoint_interval_frames"]
    return min((frames // interval + 1) * interval, ppo["total_frames"])


class Due:
    """The loop's triggers from `frames` (the frames done when it starts or resumes):

    - evaluation: every eval_interval_frames and at the end of the budget;
    - checkpoint: at the end of each checkpoint segment and every
      checkpoint_interval_minutes, never at the end of the budget (the run's outputs are
      written then);
    - report (the batches' metrics copied to the host): every `report_s` seconds.
    """

    def __init__(self, ppo: dict, frames: int, report_s: float):
        self.every, self.total = ppo["eval_interval_frames"], ppo["total_frames"]
        self.next_eval = (frames // self.every + 1) * self.every
        self.ppo, self.segment_end = ppo, segment_end(frames, ppo)
        self.minutes, self.report_s = ppo["checkpoint_interval_minutes"], report_s
        self.last_checkpoint = self.last_report = time.monotonic()

    def evaluation(self, frames: int) -> bool:
        return frames >= self.next_eval or frames >= self.total

    def evaluated(self) -> None:
        self.next_eval += self.every

    def checkpoint(self, frames: int) -> bool:
        minutes = (time.monotonic() - self.last_checkpoint) / 60
        return frames < self.total and (frames >= self.segment_end or minutes >= self.minutes)

    def checkpointed(self, frames: int) -> None:
        self.last_checkpoint = time.monotonic()
        if frames >= self.segment_end:
            self.segment_end = segment_end(frames, self.ppo)

    def report(self) -> bool:
        return time.monotonic() - self.last_report >= self.report_s

    def reported(self) -> None:
        self.last_report = time.monotonic()

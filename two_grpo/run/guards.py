"""Run guards: preemption signals, the non-finite-update counter, the failed-reward ceiling, and the exceptions
that stop a run with a documented exit code (see cli.py).

Exit codes: 3 preempted (a checkpoint was saved; `two-grpo train resume=RUN_DIR` resumes), 4 stopped by a guard
(too many non-finite updates in a row, too many failed rewards in a batch, or too long without any learning
signal; the last good checkpoint is kept).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

EXIT_PREEMPTED = 3
EXIT_GUARD = 4
PREEMPT_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")


class RunStopped(RuntimeError):
    """The run stopped on purpose; `exit_code` is what the CLI returns, the message is one line."""

    exit_code = 1


class Preempted(RunStopped):
    exit_code = EXIT_PREEMPTED


class GuardTripped(RunStopped):
    exit_code = EXIT_GUARD


class PreemptionFlag:
    """SIGTERM / SIGUSR1 / SIGINT set `requested`; the trainer saves at the next safe point and raises Preempted.
    A second SIGINT (Ctrl-C twice) interrupts at once. Handlers are installed only on the main thread."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self.requested:
            print(
                f"two-grpo: received {name}: saving a checkpoint after the current rollout batch, then exiting "
                f"with code {EXIT_PREEMPTED} (Ctrl-C again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
        self.signal_name = self.signal_name or name

    def install(self) -> PreemptionFlag:
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in PREEMPT_SIGNALS:
                sig = getattr(signal, name)
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class NonFiniteGuard:
    """Counts updates the learner skipped for a non-finite loss or grad norm; too many in a row stops the run."""

    def __init__(self, max_consecutive: int):
        self.max_consecutive = max_consecutive
        self.total = self.consecutive = 0

    def observe(self, step: int, metrics: dict[str, float]) -> None:
        """`metrics` of an update that had a batch; raises GuardTripped at `max_consecutive` skips in a row."""
        if not metrics.get("optim/skipped", 0.0):
            self.consecutive = 0
            return
        self.total += 1
        self.consecutive += 1
        print(
            f"two-grpo: warning: step {step}: non-finite loss or grad norm (loss/policy={metrics.get('loss/policy')}, "
            f"optim/grad_norm={metrics.get('optim/grad_norm')}); update skipped ({self.consecutive} in a row)",
            file=sys.stderr,
            flush=True,
        )
        if self.max_consecutive and self.consecutive >= self.max_consecutive:
            raise GuardTripped(
                f"step {step}: {self.consecutive} non-finite updates in a row (learner.max_consecutive_skips="
                f"{self.max_consecutive}); stopped, the last good checkpoint is kept; lower lr or check the data"
            )

    def state_dict(self) -> dict[str, int]:
        return {"total": self.total, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.total, self.consecutive = int(state["total"]), int(state["consecutive"])


class ZeroSignalGuard:
    """Counts rollout batches in a row in which every group of the batch (over all ranks) has zero reward variance:
    every advantage is 0, so the update has no policy gradient. Warns once per such streak after `warn_after`
    batches and stops the run (GuardTripped) after `stop_after`; 0 turns either off. Its state is checkpointed."""

    def __init__(self, warn_after: int, stop_after: int):
        self.warn_after, self.stop_after = warn_after, stop_after
        self.consecutive, self.warned = 0, False

    def observe(self, rollout_batch: int, zero_var_group_frac: float, reward_mean: float) -> None:
        """`zero_var_group_frac`: the global share of the batch's groups with equal rewards (1.0 = no signal)."""
        if zero_var_group_frac < 1.0:
            self.consecutive, self.warned = 0, False
            return
        self.consecutive += 1
        why = (
            f"every group's rewards were equal (mean reward {reward_mean:.3g}), so every advantage is 0 and no "
            "gradient flows: the model solves none of these prompts (or all of them), or the reward never fires "
            "(check the reward function, task.data.answer_field and rollout.max_response_tokens)"
        )
        if self.warn_after and self.consecutive >= self.warn_after and not self.warned:
            self.warned = True
            stop = f"; the run stops after {self.stop_after} such batches" if self.stop_after else ""
            print(
                f"two-grpo: warning: no learning signal: in the last {self.consecutive} rollout batches {why}{stop} "
                "(guards.zero_signal_warn_batches / guards.zero_signal_stop_batches, 0 = off)",
                file=sys.stderr,
                flush=True,
            )
        if self.stop_after and self.consecutive >= self.stop_after:
            raise GuardTripped(
                f"rollout batch {rollout_batch}: {self.consecutive} rollout batches in a row without learning signal "
                f"(guards.zero_signal_stop_batches={self.stop_after}): {why}; stopped, the last checkpoint is kept"
            )

    def state_dict(self) -> dict[str, int]:
        return {"consecutive": self.consecutive, "warned": int(self.warned)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.consecutive, self.warned = int(state["consecutive"]), bool(state["warned"])


def check_reward_failures(rollout_batch: int, n: int, timeouts: int, errors: int, max_frac: float) -> None:
    """Stop loudly (GuardTripped) when more than `max_frac` of a batch's `n` rewards timed out or errored."""
    failed = timeouts + errors
    if n and failed > max_frac * n:
        raise GuardTripped(
            f"rollout batch {rollout_batch}: {failed} of {n} rewards failed (timeouts {timeouts}, errors {errors}) > "
            f"task.max_failed_reward_frac={max_frac}; see reward_failures.jsonl, fix the reward or raise "
            "task.reward_timeout_s"
        )

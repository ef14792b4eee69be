"""Score completions in worker processes with a hard deadline per completion.

math-verify's own timeouts use SIGALRM (main thread only) and cannot interrupt a hang inside sympy or C
code, so each item runs in a long-lived spawned worker; a worker that misses its deadline is killed with
SIGKILL, reaped (no zombie) and replaced, and the item scores 0 with status `timeout`. An exception in the
scoring function scores 0 with status `error`. Results come back in input order.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

STARTUP_TIMEOUT_S = 120.0


@dataclass
class Outcome:
    value: float
    status: str  # ok | timeout | error
    detail: str = ""
    parts: tuple[float, ...] = ()  # a plug-in reward's per-function values (rewards.PluginReward)


def _detach_from_signals() -> None:
    """Preemption signals are the trainer's to handle (a terminal's Ctrl-C or Slurm's SIGTERM reach the whole
    process group): workers ignore them and exit when the parent closes the pipe. On Linux a worker also dies
    with its parent, so a kill -9 of the trainer leaves no scoring process behind even if one is hung."""
    for name in ("SIGINT", "SIGTERM", "SIGUSR1"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_loop(conn: Connection, fn: Callable[..., float]) -> None:
    _detach_from_signals()
    conn.send("ready")  # imports are done: deadlines start counting from here
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        idx, args = msg
        try:
            value, parts = split_value(fn(*args))
            conn.send((idx, "ok", value, "", parts))
        except Exception as exc:  # a raising reward function scores 0 and is counted by the caller
            conn.send((idx, "error", 0.0, f"{type(exc).__name__}: {exc}"[:500], ()))


def split_value(out: Any) -> tuple[float, tuple[float, ...]]:
    """A scoring function's result -> (reward, per-part values): a float, or a tuple (total, part 1, part 2, ...)."""
    if isinstance(out, tuple):
        return float(out[0]), tuple(float(x) for x in out[1:])
    return float(out), ()


class _Worker:
    def __init__(self, ctx: Any, fn: Callable[..., float], wait: bool = True):
        """Start the process; with wait=False the caller collects its "ready" message later (`mark_ready`)."""
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_loop, args=(child, fn), daemon=True)
        self.proc.start()
        child.close()
        self.item: int | None = None
        self.deadline = 0.0
        self.started = time.monotonic()
        self.ready = False
        if wait:
            if not self.conn.poll(STARTUP_TIMEOUT_S):
                self.kill()
                raise RuntimeError(f"reward worker did not start within {STARTUP_TIMEOUT_S:.0f}s")
            self.mark_ready()

    def mark_ready(self) -> None:
        """Read the worker's "ready" message (it is waiting in the pipe)."""
        try:
            self.ready = self.conn.recv() == "ready"
        except (EOFError, OSError):
            self.ready = False
        if not self.ready:
            self.kill()
            raise RuntimeError("reward worker died while starting")

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=2)
        self.kill()


class ScoringPool:
    """`workers` processes running `fn(*args) -> float`, each call limited to `timeout_s` seconds."""

    def __init__(self, fn: Callable[..., float], workers: int = 2, timeout_s: float = 2.0):
        self.fn, self.n_workers, self.timeout_s = fn, max(1, workers), timeout_s
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._warm_args: tuple[Any, ...] | None = None  # set by warm_up; replacements run it before any item

    def _ensure_started(self) -> None:
        while len(self._workers) < self.n_workers:
            self._workers.append(_Worker(self._ctx, self.fn))

    def map(self, items: list[tuple[Any, ...]]) -> list[Outcome]:
        self._ensure_started()
        results: list[Outcome | None] = [None] * len(items)
        pending = list(range(len(items)))[::-1]
        busy: dict[Connection, _Worker] = {}
        while pending or busy:
            for w in self._workers:
                if w.ready and w.item is None and pending:
                    w.item = pending.pop()
                    w.deadline = time.monotonic() + self.timeout_s
                    w.conn.send((w.item, items[w.item]))
                    busy[w.conn] = w
            starting = {w.conn: w for w in self._workers if not w.ready} if pending else {}
            if not busy and not starting:
                break
            now = time.monotonic()
            deadlines = [w.deadline for w in busy.values()] + [w.started + STARTUP_TIMEOUT_S for w in starting.values()]
            ready = wait([*busy, *starting], timeout=max(0.0, min(deadlines) - now))
            for conn in ready:
                if conn in starting:  # a replacement worker finished its imports (or its warm-up call)
                    self._on_start_message(starting.pop(conn))  # type: ignore[call-overload]
                    continue
                w = busy.pop(conn)  # type: ignore[arg-type]
                try:
                    idx, status, value, detail, parts = conn.recv()  # type: ignore[union-attr]
                    results[idx] = Outcome(value, status, detail, parts)
                except (EOFError, OSError):  # worker died (e.g. out of memory): score 0, replace it
                    results[w.item] = Outcome(0.0, "error", "worker process died")  # type: ignore[index]
                    self._replace(w)
                    continue
                w.item = None
            now = time.monotonic()
            for conn, w in list(busy.items()):
                if now >= w.deadline:
                    busy.pop(conn)
                    results[w.item] = Outcome(0.0, "timeout", f"no result within {self.timeout_s:.1f}s")  # type: ignore[index]
                    self._replace(w)
            if any(now >= w.started + STARTUP_TIMEOUT_S for w in starting.values()):
                raise RuntimeError(f"reward worker did not start within {STARTUP_TIMEOUT_S:.0f}s")
        return [r if r is not None else Outcome(0.0, "error", "lost") for r in results]

    def _replace(self, w: _Worker) -> None:
        """Kill `w` and start its replacement without waiting for it: its start-up is not charged to any item's
        deadline (items are only handed to ready workers)."""
        w.kill()
        self._workers[self._workers.index(w)] = _Worker(self._ctx, self.fn, wait=False)

    def _on_start_message(self, w: _Worker) -> None:
        """A starting replacement spoke: after "ready" it first runs the warm-up call (lazy imports inside the
        scoring function are not charged to a real item's deadline); its result makes the worker ready."""
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            msg = None
        if msg == "ready" and self._warm_args is not None:
            w.conn.send((-1, self._warm_args))
        elif msg == "ready" or (isinstance(msg, tuple) and msg[0] == -1):
            w.ready = True
        else:
            w.kill()
            raise RuntimeError("reward worker died while starting")

    def _wait_ready(self, w: _Worker) -> None:
        while not w.ready:
            if not w.conn.poll(max(0.0, w.started + STARTUP_TIMEOUT_S - time.monotonic())):
                raise RuntimeError(f"reward worker did not start within {STARTUP_TIMEOUT_S:.0f}s")
            self._on_start_message(w)

    def warm_up(self, args: tuple[Any, ...]) -> None:
        """Start the workers and run one call in each so imports are not charged to the first deadline;
        replacements of killed workers run the same call before they take an item."""
        self._warm_args = args
        self._ensure_started()
        for w in self._workers:
            self._wait_ready(w)
        for w in self._workers:
            w.conn.send((0, args))
        for w in self._workers:
            if w.conn.poll(60):
                w.conn.recv()

    def close(self) -> None:
        for w in self._workers:
            w.stop()
        self._workers = []

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Score completions in worker processes with a hard deadline per completion.

math-verify's own timeouts use SIGALRM (main thread only) and cannot interrupt a hang inside sympy or C
code, so each item runs in a long-lived spawned worker; a worker that misses its deadline is killed with
SIGKILL, reaped (no zombie) and replaced, and the item scores 0 with status `timeout`. An exception in the
scoring function scores 0 with status `error`. Results come back in input order.
"""

from __future__ import annotations

import multiprocessing as mp
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


def _worker_loop(conn: Connection, fn: Callable[..., float]) -> None:
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
            conn.send((idx, "ok", float(fn(*args)), ""))
        except Exception as exc:  # a raising reward function scores 0 and is counted by the caller
            conn.send((idx, "error", 0.0, f"{type(exc).__name__}: {exc}"[:500]))


class _Worker:
    def __init__(self, ctx: Any, fn: Callable[..., float]):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_loop, args=(child, fn), daemon=True)
        self.proc.start()
        child.close()
        self.item: int | None = None
        self.deadline = 0.0
        if not (self.conn.poll(STARTUP_TIMEOUT_S) and self.conn.recv() == "ready"):
            self.kill()
            raise RuntimeError(f"reward worker did not start within {STARTUP_TIMEOUT_S:.0f}s")

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
                if w.item is None and pending:
                    w.item = pending.pop()
                    w.deadline = time.monotonic() + self.timeout_s
                    w.conn.send((w.item, items[w.item]))
                    busy[w.conn] = w
            if not busy:
                break
            now = time.monotonic()
            ready = wait(list(busy), timeout=max(0.0, min(w.deadline for w in busy.values()) - now))
            for conn in ready:
                w = busy.pop(conn)  # type: ignore[arg-type]
                try:
                    idx, status, value, detail = conn.recv()  # type: ignore[union-attr]
                    results[idx] = Outcome(value, status, detail)
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
        return [r if r is not None else Outcome(0.0, "error", "lost") for r in results]

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self._workers[self._workers.index(w)] = _Worker(self._ctx, self.fn)

    def warm_up(self, args: tuple[Any, ...]) -> None:
        """Start the workers and run one call in each so imports are not charged to the first deadline."""
        self._ensure_started()
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

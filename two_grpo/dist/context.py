"""The distributed context: rank, world size, local rank, and the few collectives the trainer needs.

Initialised once per process from the variables that `torchrun` and the `deepspeed` launcher set (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): gloo on CPU, nccl on GPU. A single process (no launcher)
gets a context with world_size 1 and no process group; every collective is then the identity.
`ensure_process_group()` creates a world-1 gloo group for backends that need one even alone (DeepSpeed).

Owns no training logic; the slicing and reduction of rollout batches lives in `multirank.py`.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import torch


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""  # "" when no process group was created

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when collectives must go through a process group (world_size > 1)."""
        return self.world_size > 1

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def all_reduce(self, values: list[float], op: str = "sum") -> list[float]:
        """Element-wise sum/max/min of a list of floats over ranks (float64 on the process group's device)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        ops = {"sum": torch.distributed.ReduceOp.SUM, "max": torch.distributed.ReduceOp.MAX}
        ops["min"] = torch.distributed.ReduceOp.MIN
        torch.distributed.all_reduce(t, op=ops[op])
        return t.cpu().tolist()

    def reduce_metrics(self, metrics: dict[str, float], op: str = "mean") -> dict[str, float]:
        """Same dict on every rank with each value reduced over ranks (`mean`, `sum` or `max`); keys in order."""
        if not self.active or not metrics:
            return dict(metrics)
        keys = sorted(metrics)
        vals = self.all_reduce([float(metrics[k]) for k in keys], "sum" if op == "mean" else op)
        if op == "mean":
            vals = [v / self.world_size for v in vals]
        return {k: vals[keys.index(k)] for k in metrics}

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=src, device=self._comm_device())
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """[obj of rank 0, obj of rank 1, ...] on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


_CONTEXT: DistContext | None = None


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun / the deepspeed launcher / Slurm wrappers; 1 without a launcher."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_dist() -> DistContext:
    """The process's context (created on first call): joins the launcher's process group when WORLD_SIZE > 1."""
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    world = launched_world_size()
    if world <= 1:
        _CONTEXT = DistContext()
        return _CONTEXT
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
    _CONTEXT = DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend)
    return _CONTEXT


def ensure_process_group() -> DistContext:
    """`init_dist()`, plus a world-1 process group when there is none (DeepSpeed needs one even alone)."""
    global _CONTEXT
    ctx = init_dist()
    if torch.distributed.is_initialized():
        return ctx
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend=backend, rank=0, world_size=1)
    _CONTEXT = DistContext(backend=backend)
    return _CONTEXT


def shutdown() -> None:
    """Destroy the process group, if this process created or joined one."""
    global _CONTEXT
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _CONTEXT = None


def leave(code: int) -> NoReturn:
    """Tear the process group down and exit through os._exit(code). For launched ranks (torchrun / deepspeed) after
    every output is written: the interpreter's teardown can otherwise abort in C++ threads of gloo / DeepSpeed's
    shared-memory op ("terminate called without an active exception", SIGABRT), which the launcher reports as a
    failed run (seen in CI, and in the DeepSpeed invariance worker under load)."""
    shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_memory_gb() -> float:
    """This process's peak memory: GPU allocator peak on CUDA, else peak resident set size (ru_maxrss)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**30
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return maxrss / (2**30 if sys.platform == "darwin" else 2**20)

"""Route the rollout engine's own log lines (vLLM's INFO/WARNING) to `<run_dir>/engine.log` instead of stdout.

vLLM reads a logging config from $VLLM_LOGGING_CONFIG_PATH when it is imported (vllm/logger.py), in the trainer
and in its engine-core processes alike (they inherit the environment). `route_engine_logs` writes such a config:
everything of the `vllm` logger into engine.log, and only ERROR lines also to stderr. `logger.verbose=true`
leaves vLLM's own console logging alone; so does a $VLLM_LOGGING_CONFIG_PATH the user set.

Not everything the engine says is a log record: its import and build print to the process's file descriptors
directly (C++ warnings from torch/oneDNN, "Triton is installed, but ...", Python FutureWarnings, the
"Loading safetensors checkpoint shards" progress bar). `console_to_engine_log()` sends fds 1 and 2 to the same
engine.log for the duration of the engine's start-up. DeepSpeed's "Setting accelerator to CPU" WARNING (printed
on stdout when transformers' save_pretrained imports deepspeed on a machine without CUDA) is avoided by naming
the accelerator it would fall back to anyway (DS_ACCELERATOR=cpu).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENGINE_LOG = "engine.log"
CONFIG_NAME = ".engine_logging.json"
_console_log: Path | None = None  # where console_to_engine_log() sends fds 1/2; None: leave the console alone


def logging_config(log_file: Path) -> dict:
    fmt = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": fmt},
        "handlers": {
            "engine_file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain"},
            "errors": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "level": "ERROR"},
        },
        "loggers": {"vllm": {"handlers": ["engine_file", "errors"], "level": "INFO", "propagate": False}},
    }


def route_engine_logs(run_dir: Path, verbose: bool) -> Path | None:
    """Point vLLM's logging at run_dir/engine.log (before vllm is imported); returns the log path or None."""
    global _console_log
    _console_log = None
    theirs = os.environ.get("VLLM_LOGGING_CONFIG_PATH", "")
    if verbose or (theirs and not theirs.endswith(CONFIG_NAME)):  # a config the user set wins
        return None
    quiet_deepspeed_accelerator_warning()
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = (run_dir / ENGINE_LOG).resolve()
    config_path = run_dir / CONFIG_NAME
    config_path.write_text(json.dumps(logging_config(log_file), indent=2))
    os.environ["VLLM_CONFIGURE_LOGGING"] = "1"
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(config_path.resolve())
    _console_log = log_file
    return log_file


def quiet_deepspeed_accelerator_warning() -> None:
    """Without CUDA, DeepSpeed falls back to its CPU accelerator with a WARNING on stdout; name it instead."""
    import torch

    if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


@contextmanager
def console_to_engine_log() -> Iterator[Path | None]:
    """Within: this process's stdout and stderr file descriptors write to the routed engine.log (when
    route_engine_logs routed; else nothing changes). Yields the log path or None. An exception raised inside
    reaches the caller after the console is back, so its traceback is shown as usual."""
    target = _console_log
    if target is None:
        yield None
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    log_fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        yield target
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log_fd):
            os.close(fd)

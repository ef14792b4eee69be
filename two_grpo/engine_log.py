"""Route the rollout engine's own log lines (vLLM's INFO/WARNING) to `<run_dir>/engine.log` instead of stdout.

vLLM reads a logging config from $VLLM_LOGGING_CONFIG_PATH when it is imported (vllm/logger.py), in the trainer
and in its engine-core processes alike (they inherit the environment). `route_engine_logs` writes such a config:
everything of the `vllm` logger into engine.log, and only ERROR lines also to stderr. `logger.verbose=true`
leaves vLLM's own console logging alone; so does a $VLLM_LOGGING_CONFIG_PATH the user set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENGINE_LOG = "engine.log"
CONFIG_NAME = ".engine_logging.json"


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
    theirs = os.environ.get("VLLM_LOGGING_CONFIG_PATH", "")
    if verbose or (theirs and not theirs.endswith(CONFIG_NAME)):  # a config the user set wins
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = (run_dir / ENGINE_LOG).resolve()
    config_path = run_dir / CONFIG_NAME
    config_path.write_text(json.dumps(logging_config(log_file), indent=2))
    os.environ["VLLM_CONFIGURE_LOGGING"] = "1"
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(config_path.resolve())
    return log_file

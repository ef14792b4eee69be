"""Shared fixtures: a fast tiny model (short SFT) built once per session, config composition."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs TEST_WORKERS (2) xdist workers: one thread each,
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # for the worker's torch and the CLIs it starts (no oversubscription)

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """builtin:tiny architecture with a 30-step warm start: right shapes and tokenizer, built in seconds."""
    from two_grpo.models.tiny_model import TinyRecipe, build

    return build(tmp_path_factory.mktemp("tiny") / "model", TinyRecipe(sft_steps=30))


@pytest.fixture
def compose():
    from two_grpo.config.compose import compose as _compose
    from two_grpo.config.compose import to_train_config

    def _run(overrides: list[str]):
        return to_train_config(_compose(overrides))

    return _run

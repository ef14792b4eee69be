"""The torch learner's layouts and AdamW kernels through the real training loop: the first optimizer step (same
weights, same rollouts) gives the padded learner's loss and grad norm, for the default (rows packed around shared
prompts), packing alone, another packing width and the for-loop AdamW. Run: pytest -m slow
tests/integration/test_learner_switches.py"""

import contextlib
import io
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def first_steps(run_dir: Path, extra: list[str]) -> list[dict]:
    from two_grpo.config.compose import compose, to_train_config
    from two_grpo.run.trainer import train

    overrides = ["experiment=smoke", "budget.max_steps=2", "eval.prompts=0",
                 "eval.difficulty_prompts=0", "logger.progress=false", "learner.micro_rollouts=5", *extra]  # fmt: skip
    run_dir.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        train(to_train_config(compose(overrides)), run_dir)
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    """The padded learner's run, once for every switch (it does not depend on the case)."""
    return first_steps(tmp_path_factory.mktemp("switches") / "ref", ["learner.padding_free=false"])


@pytest.mark.parametrize(
    "switches",
    [[], ["learner.shared_prefix=false"], ["learner.pack_tokens=64"],
     ["learner.padding_free=false", "learner.adamw_impl=for_loop"]],
)  # fmt: skip
def test_switch_keeps_the_first_step(tmp_path, reference, switches):
    """On builtin:tiny (the default model: it solves some prompts, so the first step has a gradient)."""
    ref = reference
    got = first_steps(tmp_path / "got", switches)
    assert got[0]["budget/tokens_generated_total"] == ref[0]["budget/tokens_generated_total"]  # same rollouts
    for key in ("loss/policy", "optim/grad_norm", "loss/entropy"):
        assert got[0][key] == pytest.approx(ref[0][key], rel=1e-5, abs=1e-7), key
    assert ref[0]["optim/grad_norm"] > 0

"""Each budget mode stops a real (tiny) run where it should, and where config.derive() projected.
Run: pytest -m slow tests/integration/test_budget_modes.py"""

import json

import pytest

from two_grpo.config.schema import derive
from two_grpo.run.trainer import train

pytestmark = pytest.mark.slow
BASE = [
    "prompts_per_rollout=4",
    "prompts_per_minibatch=2",
    "group_size=2",
    "task.arith.train_prompts=12",
    "eval.prompts=0",
    "logger.progress=false",
    "logger.dump_rollouts_every=0",
    "budget.max_steps=0",
]  # one rollout batch = 4 prompts x G=2 = 8 rollouts and 2 optimizer steps


@pytest.mark.parametrize(
    "mode",
    ["budget=steps budget.max_steps=3", "budget=epochs budget.max_epochs=1", "budget=rollouts budget.max_rollouts=20",
     "budget=tokens budget.max_tokens=60", "budget=wallclock budget.max_wallclock_s=0.5"],
)  # fmt: skip
def test_budget_mode_stops_the_run(compose, tiny_model_dir, tmp_path, mode):
    cfg = compose([*BASE, f"model.path={tiny_model_dir}", *mode.split()])
    summary = train(cfg, tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    projected = derive(cfg, 12).total_steps
    b = cfg.budget
    if b.max_steps:
        assert summary["optimizer_steps"] == 3 == projected  # stops mid rollout batch
    if b.max_epochs:
        assert summary["epochs"] == 1.0 and summary["optimizer_steps"] == projected == 6  # 12 prompts / 4 = 3 batches
    if b.max_rollouts:
        assert summary["rollouts"] == 24 and summary["optimizer_steps"] == projected == 6  # 8, 16 < 20 <= 24
    if b.max_tokens:
        assert summary["tokens_generated"] >= 60 and projected == -1
        last_batch_start = [r for r in rows if r["rollout_batch"] == rows[-1]["rollout_batch"]][0]["step"]
        before = [r["budget/tokens_generated_total"] for r in rows if r["step"] < last_batch_start]
        assert not before or before[-1] < 60  # it stopped after the first batch that reached the limit
    if b.max_wallclock_s:
        assert summary["wallclock_s"] >= 0.5 and projected == -1
    assert (tmp_path / "final" / "model.safetensors").is_file()

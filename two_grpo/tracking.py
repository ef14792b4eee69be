"""Run outputs: metrics.jsonl (one object per optimizer step), rollout dumps, optional wandb, summary.

Only the main process writes. `logger.backend=wandb` logs the same dicts to wandb (WANDB_MODE=offline works
with no login) and still writes metrics.jsonl.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from two_grpo.batch import Prompt, Rollout

# Metric names written every optimizer step (the README's glossary documents each one).
STEP_KEYS = (
    "step",
    "rollout/reward_mean",
    "rollout/solve_rate",
    "rollout/response_tokens_mean",
    "rollout/truncated_frac",
    "rollout/zero_var_group_frac",
    "rollout/reward_timeouts",
    "rollout/reward_errors",
    "adv/abs_mean",
    "loss/policy",
    "loss/clip_frac",
    "loss/entropy",
    "optim/grad_norm",
    "optim/lr",
    "time/rollout",
    "time/reward",
    "time/logprob",
    "time/learner",
    "time/sync",
    "time/eval",
    "time/step",
    "memory/peak_gb",
    "budget/rollouts_total",
    "budget/tokens_generated_total",
    "budget/optimizer_steps",
    "rollout/zero_adv_frac",
    "rollout/zero_var_pred_batch_p",
    "adv/abs_mean_nonzero",
)
PHASES = ("rollout", "reward", "logprob", "learner", "sync", "eval")


class Tracker:
    def __init__(self, run_dir: Path, backend: str, project: str, config: dict[str, Any], run_id: str):
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        self._metrics = open(self.metrics_path, "a", encoding="utf-8")
        self._wandb = None
        if backend == "wandb":
            import wandb

            os.environ.setdefault("WANDB_DIR", str(run_dir))
            self._wandb = wandb.init(
                project=project, name=run_id, id=run_id, config=config, dir=str(run_dir), resume="allow"
            )

    def log(self, metrics: dict[str, Any]) -> None:
        self._metrics.write(json.dumps(metrics, sort_keys=True) + "\n")
        self._metrics.flush()
        if self._wandb is not None:
            self._wandb.log(metrics, step=int(metrics["step"]))

    def log_eval(self, line: dict[str, Any]) -> None:
        """One eval (evaluate.Evaluator): a line of eval.jsonl, and the same dict to wandb."""
        with open(self.run_dir / "eval.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")
        if self._wandb is not None:
            self._wandb.log(line, step=int(line["step"]))

    def dump_rollouts(self, step: int, rollouts: list[Rollout], prompts: dict[int, Prompt]) -> None:
        folder = self.run_dir / "rollouts"
        folder.mkdir(exist_ok=True)
        with open(folder / f"step_{step:06d}.jsonl", "w", encoding="utf-8") as f:
            for r in rollouts:
                f.write(
                    json.dumps(
                        {
                            "step": step,
                            "group_id": r.group_id,
                            "prompt": prompts[r.prompt_id].text,
                            "answer": prompts[r.prompt_id].answer,
                            "completion": r.text,
                            "reward": r.reward,
                            "advantage": r.advantage,
                            "finish_reason": r.finish_reason,
                            "response_tokens": len(r.token_ids),
                        }
                    )
                    + "\n"
                )

    def dump_failures(self, step: int, failures: list[dict[str, str]]) -> None:
        with open(self.run_dir / "reward_failures.jsonl", "a", encoding="utf-8") as f:
            for item in failures:
                f.write(json.dumps({"step": step, **item}) + "\n")

    def write_json(self, name: str, payload: dict[str, Any]) -> None:
        tmp = self.run_dir / f".{name}.tmp"
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        os.replace(tmp, self.run_dir / name)

    def close(self) -> None:
        self._metrics.close()
        if self._wandb is not None:
            self._wandb.finish()

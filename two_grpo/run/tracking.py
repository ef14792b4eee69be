"""Run outputs: metrics.jsonl (one object per optimizer step), rollout dumps, optional wandb, summary.

Only the main process writes. `logger.backend=wandb` logs the same dicts to wandb (WANDB_MODE=offline works
with no login) and still writes metrics.jsonl.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from two_grpo.data.batch import Prompt, Rollout

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
    "rollout/reward_std",
    "rollout/response_tokens_min",
    "rollout/response_tokens_max",
    "throughput/tokens_per_s",
    "throughput/rollout_tokens_per_s",
)


def peer_metrics(rollouts: list[Rollout], rollout_s: float, tokens_total: int, wall_s: float, dist: Any) -> dict:
    """The metrics TRL and verl users look for: reward std (population, over the rollout batch), response length
    min/max, and generated tokens per second: end to end since the run started (eval included) and during this
    rollout batch's generation. Global over ranks."""
    n = float(len(rollouts))
    s1 = float(sum(r.reward for r in rollouts))
    s2 = float(sum(r.reward * r.reward for r in rollouts))
    lengths = [len(r.token_ids) for r in rollouts] or [0]
    tokens = float(sum(lengths))
    n, s1, s2, tokens = dist.all_reduce([n, s1, s2, tokens], "sum") if dist.active else (n, s1, s2, tokens)
    lo = dist.all_reduce([float(min(lengths))], "min")[0] if dist.active else float(min(lengths))
    hi = dist.all_reduce([float(max(lengths))], "max")[0] if dist.active else float(max(lengths))
    rollout_s = dist.all_reduce([rollout_s], "max")[0] if dist.active else rollout_s
    mean = s1 / max(n, 1.0)
    return {
        "rollout/reward_std": max(s2 / max(n, 1.0) - mean * mean, 0.0) ** 0.5,
        "rollout/response_tokens_min": lo,
        "rollout/response_tokens_max": hi,
        "throughput/tokens_per_s": tokens_total / wall_s if wall_s > 0 else 0.0,
        "throughput/rollout_tokens_per_s": tokens / rollout_s if rollout_s > 0 else 0.0,
    }


PHASES = ("rollout", "reward", "logprob", "learner", "sync", "eval")


COMPLETIONS_TABLE_ROWS = 64  # rows of one wandb completions table (the dump file keeps them all)
# Set by sweep_job.run_member for each member: the wandb group and tag when logger.group / logger.tags are unset.
SWEEP_ENV, MEMBER_ENV = "TWO_GRPO_SWEEP_NAME", "TWO_GRPO_SWEEP_MEMBER_NAME"


def wandb_ids(group: str, tags: list[str]) -> tuple[str | None, list[str] | None]:
    """logger.group / logger.tags, else the sweep's name / the member's name from the environment, else None."""
    group = group or os.environ.get(SWEEP_ENV, "")
    tags = list(tags) or ([os.environ[MEMBER_ENV]] if os.environ.get(MEMBER_ENV) else [])
    return group or None, tags or None


class Tracker:
    @classmethod
    def for_run(cls, run_dir: Path, cfg: Any) -> Tracker:
        """The run's tracker from its TrainConfig (`cfg.logger`; the whole config goes to wandb)."""
        from omegaconf import OmegaConf

        lg = cfg.logger
        config = OmegaConf.to_container(OmegaConf.structured(cfg))
        return cls(run_dir, lg.backend, lg.project, config, cfg.run_id, lg.entity, lg.group, list(lg.tags))  # type: ignore[arg-type]

    def __init__(
        self,
        run_dir: Path,
        backend: str,
        project: str,
        config: dict[str, Any],
        run_id: str,
        entity: str = "",
        group: str = "",
        tags: list[str] | None = None,
    ):
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        self._metrics = open(self.metrics_path, "a", encoding="utf-8")
        self._wandb = None
        if backend == "wandb":
            import wandb

            os.environ.setdefault("WANDB_DIR", str(run_dir))
            wandb_group, wandb_tags = wandb_ids(group, tags or [])
            self._wandb = wandb.init(
                project=project,
                entity=entity or None,
                group=wandb_group,
                tags=wandb_tags,
                name=run_id,
                id=run_id,
                config=config,
                dir=str(run_dir),
                resume="allow",
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
        self.log_completions(step, rollouts, prompts)

    def log_completions(self, step: int, rollouts: list[Rollout], prompts: dict[int, Prompt]) -> None:
        """wandb only: a `completions` table (step, prompt, completion, reward, advantage), TRL's and verl's view."""
        if self._wandb is None:
            return
        import wandb

        table = wandb.Table(columns=["step", "prompt", "completion", "reward", "advantage"])
        for r in rollouts[:COMPLETIONS_TABLE_ROWS]:
            table.add_data(step, prompts[r.prompt_id].text, r.text, float(r.reward), float(r.advantage))
        self._wandb.log({"completions": table}, step=step)

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

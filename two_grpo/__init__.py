"""two-grpo: GRPO experiment runner for comparing rollout budgets."""

__version__ = "0.1.0"

"""TRL's and verl's config names -> ours, for the nearest-key suggestion of an unknown key (compose.format_config_error)
and the README's table. Values: (our key, a note on how the meaning differs; "" when it is the same)."""

from __future__ import annotations

TRL: dict[str, tuple[str, str]] = {
    "learning_rate": ("lr", ""),
    "num_generations": ("group_size", ""),
    "beta": ("algo.kl_coef", "TRL's default is 0 too"),
    "epsilon": ("algo.clip_low", ""),
    "epsilon_high": ("algo.clip_high", ""),
    "max_completion_length": ("rollout.max_response_tokens", ""),
    "max_prompt_length": ("rollout.max_prompt_tokens", ""),
    "scale_rewards": ("algo.advantage", "group=grpo, batch=batch_std, none=dr_grpo"),
    "loss_type": ("algo.loss_agg", "dapo=token_mean, grpo=seq_mean_token_mean"),
    "per_device_train_batch_size": ("prompts_per_minibatch", "TRL counts completions; we count prompts (x group_size)"),
    "generation_batch_size": ("prompts_per_rollout", "TRL counts completions; we count prompts (x group_size)"),
    "gradient_accumulation_steps": ("learner.micro_rollouts", "we give the micro-batch size in rollouts instead"),
    "max_steps": ("budget.max_steps", ""),
    "num_train_epochs": ("budget.max_epochs", ""),
    "warmup_steps": ("learner.warmup_steps", ""),
    "max_grad_norm": ("learner.grad_clip", ""),
    "report_to": ("logger.backend", "jsonl | wandb"),
    "save_steps": ("checkpoint.every_steps", ""),
    "save_total_limit": ("checkpoint.keep_last", ""),
    "eval_steps": ("eval.every_steps", ""),
    "num_generations_eval": ("eval.samples_per_prompt", ""),
    "use_vllm": ("rollout.backend", "rollout=vllm | rollout=hf"),
    "vllm_gpu_memory_utilization": ("rollout.gpu_memory_utilization", ""),
    "vllm_enable_sleep_mode": ("rollout.enable_sleep", ""),
    "vllm_tensor_parallel_size": ("rollout.tensor_parallel_size", ""),
    "model_name_or_path": ("model.path", ""),
    "lora_r": ("model.lora.r", ""),
    "lora_alpha": ("model.lora.alpha", ""),
    "lora_dropout": ("model.lora.dropout", ""),
    "lora_target_modules": ("model.lora.target_modules", ""),
    "output_dir": ("hydra.run.dir", ""),
    "run_name": ("run_id", ""),
    "logging_steps": ("logger.print_every", ""),
    "padding_free": ("learner.padding_free", ""),
    "torch_compile": ("learner.compile", "we compile the decoder layers"),
}

VERL: dict[str, tuple[str, str]] = {
    "actor_rollout_ref.actor.optim.lr": ("lr", ""),
    "actor_rollout_ref.rollout.n": ("group_size", ""),
    "data.train_batch_size": ("prompts_per_rollout", ""),
    "actor_rollout_ref.actor.ppo_mini_batch_size": ("prompts_per_minibatch", ""),
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": ("learner.micro_rollouts", "verl counts prompts"),
    "actor_rollout_ref.actor.clip_ratio_low": ("algo.clip_low", ""),
    "actor_rollout_ref.actor.clip_ratio_high": ("algo.clip_high", ""),
    "actor_rollout_ref.actor.kl_loss_coef": ("algo.kl_coef", "our KL is always in the loss"),
    "actor_rollout_ref.actor.kl_loss_type": ("algo.kl_estimator", "low_var_kl=k3"),
    "actor_rollout_ref.actor.entropy_coeff": ("algo.entropy_coef", ""),
    "actor_rollout_ref.actor.loss_agg_mode": ("algo.loss_agg", "token-mean=token_mean, ..."),
    "algorithm.adv_estimator": ("algo.advantage", ""),
    "algorithm.norm_adv_by_std_in_grpo": ("algo.advantage", "false = algo.advantage=dr_grpo"),
    "data.max_response_length": ("rollout.max_response_tokens", ""),
    "data.max_prompt_length": ("rollout.max_prompt_tokens", ""),
    "actor_rollout_ref.rollout.temperature": ("rollout.temperature", ""),
    "actor_rollout_ref.rollout.name": ("rollout.backend", ""),
    "actor_rollout_ref.rollout.gpu_memory_utilization": ("rollout.gpu_memory_utilization", ""),
    "actor_rollout_ref.rollout.tensor_model_parallel_size": ("rollout.tensor_parallel_size", ""),
    "actor_rollout_ref.model.path": ("model.path", ""),
    "actor_rollout_ref.model.lora_rank": ("model.lora.r", ""),
    "actor_rollout_ref.model.lora_alpha": ("model.lora.alpha", ""),
    "actor_rollout_ref.model.target_modules": ("model.lora.target_modules", ""),
    "actor_rollout_ref.model.enable_gradient_checkpointing": ("learner.gradient_checkpointing", ""),
    "actor_rollout_ref.model.use_remove_padding": ("learner.padding_free", ""),
    "trainer.total_training_steps": ("budget.max_steps", ""),
    "trainer.total_epochs": ("budget.max_epochs", ""),
    "trainer.save_freq": ("checkpoint.every_steps", ""),
    "trainer.test_freq": ("eval.every_steps", ""),
    "trainer.project_name": ("logger.project", ""),
    "trainer.experiment_name": ("experiment_name", ""),
    "trainer.logger": ("logger.backend", ""),
    "trainer.resume_mode": ("resume", "resume=RUN_DIR"),
    "data.seed": ("seed", ""),
    "data.train_files": ("task.data.path", ""),
    "data.val_files": ("task.data.eval_path", ""),
    "data.prompt_key": ("task.data.prompt_field", ""),
}


def _short_forms() -> dict[str, tuple[str, str, str]]:
    """Every peer name, also without verl's leading group(s) (`rollout.n`, `optim.lr`, `n` is too short)."""
    out: dict[str, tuple[str, str, str]] = {}
    for who, table in (("TRL", TRL), ("verl", VERL)):
        for name, (ours, note) in table.items():
            parts = name.split(".")
            for i in range(len(parts)):
                short = ".".join(parts[i:])
                if len(short) >= 4 and short not in out:
                    out[short] = (ours, who, note)
    return out


SHORT = _short_forms()


def peer_hint(key: str) -> str | None:
    """`learning_rate` -> "that is TRL's name; here it is 'lr'" (None when `key` is no peer's name)."""
    hit = SHORT.get(key.lstrip("+~"))
    if hit is None:
        return None
    ours, who, note = hit
    return f"that is {who}'s name; here it is '{ours}'" + (f" ({note})" if note else "")


def markdown_table() -> str:
    """The README's table: peer name | ours | note."""
    rows = ["| TRL / verl | two-grpo | note |", "| --- | --- | --- |"]
    for who, table in (("TRL", TRL), ("verl", VERL)):
        for name, (ours, note) in table.items():
            rows.append(f"| {who} `{name}` | `{ours}` | {note} |")
    return "\n".join(rows)

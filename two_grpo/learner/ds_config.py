"""Pure: our TrainConfig + world size -> the DeepSpeed config dict. Imports neither torch nor deepspeed.

Batch sizes are derived, never set twice: each rank holds `rollouts_per_minibatch / world_size` rollouts of a
mini-batch (whole groups), split into micro-batches of at most `learner.micro_rollouts`, so
    train_micro_batch_size_per_gpu = min(micro_rollouts, rollouts per rank)
    gradient_accumulation_steps    = ceil(rollouts per rank / micro batch)
and DeepSpeed derives train_batch_size = micro x GAS x world_size itself (it is not written here).
These are DeepSpeed's bookkeeping only: the learner marks the accumulation boundary explicitly on the last
micro-batch (their number can vary when zero-variance groups are dropped) and calls backward with
`scale_wrt_gas=False`, because our micro-batch losses are already divided by the whole mini-batch normaliser.

Precision follows `model.dtype` (bfloat16 -> bf16 with fp32 master weights, float16 -> fp16 with dynamic loss
scaling, float32 -> fp32); gradients always accumulate in fp32 (`data_types.grad_accum_dtype`). The optimizer is our own torch AdamW (same update as the torch learner) unless the
optimizer is offloaded, where DeepSpeed's CPU AdamW runs the step. The warm-up-then-constant schedule is
passed to `deepspeed.initialize` as a client scheduler, so it is not in this dict either.
"""

from __future__ import annotations

from typing import Any

from two_grpo.config.schema import ConfigError, TrainConfig


def rollouts_per_rank(cfg: TrainConfig, world_size: int) -> int:
    """Rollouts of one mini-batch that each rank holds (prompts_per_minibatch / world_size whole groups)."""
    if cfg.prompts_per_minibatch % world_size:
        raise ConfigError(
            f"prompts_per_minibatch={cfg.prompts_per_minibatch} must be divisible by the number of ranks "
            f"({world_size}) so that every rank gets whole groups; set it to a multiple of {world_size}"
        )
    return cfg.prompts_per_minibatch // world_size * cfg.group_size


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed JSON config for `cfg` on `world_size` data-parallel ranks."""
    lc = cfg.learner
    per_rank = rollouts_per_rank(cfg, world_size)
    micro = min(lc.micro_rollouts, per_rank)
    gas = -(-per_rank // micro)
    zero: dict[str, Any] = {"stage": lc.zero_stage}
    if lc.zero_stage == 3:
        zero["stage3_param_persistence_threshold"] = lc.zero3_persistence_threshold
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    if lc.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if lc.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": False}
    out: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": gas,
        "gradient_clipping": lc.grad_clip if lc.grad_clip > 0 else 0.0,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        # accumulate micro-batch gradients in fp32 (else DeepSpeed accumulates in the model's dtype, bf16)
        "data_types": {"grad_accum_dtype": "fp32"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    dtype = cfg.model.dtype
    if dtype == "bfloat16":
        out["bf16"] = {"enabled": True}
    elif dtype == "float16":
        out["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}
    if lc.offload_optimizer:
        out["optimizer"] = {
            "type": "AdamW",
            "params": {
                "lr": cfg.lr,
                "betas": [lc.adam_beta1, lc.adam_beta2],
                "eps": lc.adam_eps,
                "weight_decay": lc.weight_decay,
            },
        }
    return out


def warmup_constant(warmup_steps: int):
    """lr multiplier of optimizer step k (0-based): (k+1)/warmup during warm-up, then 1 (as the torch learner)."""
    warmup = max(warmup_steps, 0)
    return lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0

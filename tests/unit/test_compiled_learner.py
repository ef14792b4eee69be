"""learner.compile (torch.compile of the decoder layers) and learner.adamw_impl: same loss, gradients and
updates as the eager for-loop AdamW learner, to fp32 tolerance; the compile cache lands in the project cache."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from batches import random_batch

from two_grpo.config.schema import AlgoConfig, ConfigError, LearnerConfig
from two_grpo.learner import compiled
from two_grpo.learner.torch_learner import TorchLearner

sys.path.insert(0, str(Path(__file__).parent))
from test_packing import qwen2  # noqa: E402


def adamw_run(impl: str, steps: int = 5) -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(17, 9)), torch.nn.Parameter(torch.randn(33))]
    opt = compiled.adamw(params, 1e-2, LearnerConfig(adamw_impl=impl, weight_decay=0.1))
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("impl", ["foreach", "fused", "default"])
def test_adamw_kernels_match_the_for_loop_update(impl):
    ref, got = adamw_run("for_loop"), adamw_run(impl)
    start = adamw_run("for_loop", steps=0)
    assert not torch.allclose(ref[0], start[0])  # the updates moved the weights
    for r, x in zip(ref, got):
        assert torch.allclose(x, r, rtol=1e-6, atol=1e-7), (x - r).abs().max()


def test_adamw_impl_is_the_requested_kernel():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert compiled.adamw(p, 1e-3, LearnerConfig(adamw_impl="fused")).defaults["fused"] is True
    assert compiled.adamw(p, 1e-3, LearnerConfig(adamw_impl="foreach")).defaults["foreach"] is True
    assert compiled.adamw(p, 1e-3, LearnerConfig(adamw_impl="for_loop")).defaults["foreach"] is False


def test_inductor_cache_goes_to_the_project_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("TWO_GRPO_CACHE", str(tmp_path))
    assert compiled.inductor_cache_dir() == tmp_path / "inductor"
    model = qwen2()
    layers = compiled.CompiledLayers(model)  # lazy: nothing compiles until the first call
    assert len(layers) == 2
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compiled.inductor_cache_dir() == tmp_path / "mine"  # the user's choice wins


def test_compile_refuses_a_model_without_layers():
    with pytest.raises(ValueError, match="learner.compile=false"):
        compiled.CompiledLayers(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("key", ["learner.compile=true", "learner.padding_free=true", "learner.adamw_impl=fused"])
def test_torch_only_keys_are_refused_with_deepspeed(compose, key):
    assert compose([key]).learner.backend == "torch"  # accepted with the torch learner
    with pytest.raises(ConfigError, match=key.split("=")[0]):
        compose([key, "learner=zero2"])


@pytest.mark.slow
def test_compiled_learner_equals_eager_and_compiles_once(monkeypatch, tmp_path):
    """Four optimizer steps on batches of different lengths (all padded to 32): same losses and weights as eager,
    and one compiled graph (no recompile per step). One cold compile: ~30 s quiet, ~80 s loaded, on 2 CPUs."""
    import torch._dynamo.utils as dynamo_utils

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    base = dynamo_utils.counters["stats"]["unique_graphs"]
    results = {}
    for comp in (False, True):
        model = qwen2()
        cfg = LearnerConfig(micro_rollouts=64, grad_clip=0.0, warmup_steps=0, compile=comp, compile_pad_multiple=32)
        learner = TorchLearner(model, cfg, 1e-3, AlgoConfig(), temperature=1.0)
        losses, graphs = [], []
        for seed in range(4):
            batch = random_batch(12, 2, lambda i, s=seed: 1 + (3 * i + s) % (5 + 3 * s), seed=seed)
            old = learner.logprobs(batch) + 0.05 * batch.loss_mask
            losses.append(learner.train_minibatch(batch.with_logprobs(old_logp=old))["loss/policy"])
            graphs.append(dynamo_utils.counters["stats"]["unique_graphs"] - base)
        results[comp] = (losses, {n: p.detach().clone() for n, p in model.named_parameters()}, graphs)
    (l_ref, w_ref, _), (l_c, w_c, graphs) = results[False], results[True]
    # outside the learner's passes the layers run eagerly (an HF engine sharing the module compiles nothing)
    assert all(layer._compiled_call_impl is None for layer in model.get_decoder().layers)
    with torch.no_grad():
        model(input_ids=torch.randint(4, 50, (3, 41)), use_cache=True)
    assert dynamo_utils.counters["stats"]["unique_graphs"] - base == graphs[-1]
    assert l_c == pytest.approx(l_ref, abs=1e-5)
    for name in w_ref:
        assert torch.allclose(w_c[name], w_ref[name], atol=1e-5), name
    # the no-grad logprob pass and the training pass are two graphs; later steps with new lengths add none
    assert 1 <= graphs[0] == graphs[-1] <= 2, graphs

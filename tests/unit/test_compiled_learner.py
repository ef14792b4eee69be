"""learner.compile (torch.compile of the decoder layers) and learner.adamw_impl: same loss, gradients and
updates as the eager for-loop AdamW learner, to fp32 tolerance; the compile cache lands in the project cache."""

from __future__ import annotations

import sys
from dataclasses import replace
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
    assert compiled.adamw(p, 1e-3, LearnerConfig()).defaults["fused"] is True  # default on CPU: fused, as HF Trainer
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


@pytest.mark.slow
def test_compiled_layers_over_segments_equal_eager_padded(monkeypatch, tmp_path):
    """learner.compile=true over the torch learner's default layout (one packed sequence, shared prompts, attention
    by segments): the same old log-probs, loss and gradients as the eager padded learner on three batches of
    different shapes; the segment attention traced into each layer's graph (no graph break), one graph per pass
    kind for all three (dynamic sizes from the first compile). ~40 s cold on 2 CPUs."""
    import torch._dynamo.utils as dynamo_utils
    from test_packing import assert_same_step, learner_step
    from test_prefix_sharing import grouped

    from two_grpo.learner.segment_attention import segments_reason

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    graphs, breaks = dynamo_utils.counters["stats"]["unique_graphs"], sum(dynamo_utils.counters["graph_break"].values())
    padded = LearnerConfig(micro_rollouts=64, grad_clip=0.0, warmup_steps=0)
    default = replace(padded, padding_free=True, shared_prefix=True, segment_attention=True, compile="true")
    model = qwen2()
    learner = TorchLearner(model, default, 1e-3, AlgoConfig(), temperature=1.0)
    learner.optimizer.step = lambda *a, **k: None  # the same weights for every batch
    assert learner.layout.segment_attention and segments_reason(model) is None  # the layers attend by segments
    for seed, (groups, size) in enumerate([(4, 3), (3, 5), (6, 2)]):
        batch = grouped(groups, size, seed=seed)
        old = learner.logprobs(batch)
        metrics = learner.train_minibatch(batch.with_logprobs(old_logp=old + 0.05 * batch.loss_mask))
        got = (old, metrics, {n: p.grad.clone() for n, p in model.named_parameters()})
        assert_same_step(batch, learner_step(batch, padded), got)
    assert sum(dynamo_utils.counters["graph_break"].values()) == breaks  # one graph per layer call
    assert dynamo_utils.counters["stats"]["unique_graphs"] - graphs == 2  # training and no-grad, each compiled once


# ------------------------------------------------------------------------------------------------ compile=full
def test_compile_values_map_and_old_configs_stay_valid(compose):
    from two_grpo.config.schema import compile_mode

    assert [compile_mode(v) for v in (False, True, "false", "true", "True", "layers", "full")] == [
        "false", "layers", "false", "layers", "layers", "layers", "full"
    ]  # fmt: skip
    for value in ("true", "false", "layers", "full"):
        compose([f"learner.compile={value}"])  # validates
    with pytest.raises(ConfigError, match="learner.compile='fast' is not allowed"):
        compose(["learner.compile=fast"])
    # full packs to a fixed width: pack_tokens, or COMPILED_PACK_TOKENS where pack_tokens=0 (one sequence)
    for width, want in ((0, 128), (64, 64)):
        lc = compose(["learner.compile=full", "learner.padding_free=true", f"learner.pack_tokens={width}"]).learner
        assert TorchLearner(qwen2(), lc, 1e-3, AlgoConfig(), 1.0).full.pack_tokens == want
    # full mode: the loss compiles (lazily, nothing yet), the layers do not; AdamW default: the fused kernel
    full = TorchLearner(qwen2(), LearnerConfig(compile="full"), 1e-3, AlgoConfig(), 1.0)
    assert full.full is not None and full.optimizer.defaults["fused"] is True
    assert all(layer._compiled_call_impl is None for layer in full.model.get_decoder().layers)
    assert TorchLearner(qwen2(), LearnerConfig(compile="full", adamw_impl="foreach"), 1e-3, AlgoConfig(), 1.0
                        ).optimizer.defaults["foreach"] is True  # fmt: skip
    assert TorchLearner(qwen2(), LearnerConfig(compile="true"), 1e-3, AlgoConfig(), 1.0).full is None  # = layers


def test_pad_micro_keeps_the_loss_and_gradients():
    """pad_micro's new columns are masked out: eager loss and gradients unchanged; shapes reach the multiple."""
    from two_grpo.learner.step import micro_batch_loss

    batch = random_batch(6, 2, lambda i: 1 + (5 * i) % 7, seed=3)
    batch = batch.with_logprobs(old_logp=0.1 * batch.loss_mask)
    padded = compiled.pad_micro(batch, 8)
    assert padded.input_ids.shape[1] % 8 == 0 and padded.input_ids.shape[1] > batch.input_ids.shape[1]
    assert padded.loss_mask.shape[1] == padded.input_ids.shape[1] - 1 == padded.old_logp.shape[1]
    assert compiled.pad_micro(padded, 8) is padded
    grads = []
    for b in (batch, padded):
        model = qwen2()
        loss, _ = micro_batch_loss(model, b, AlgoConfig(), 1.0, batch.n_tokens, 6.0)
        loss.backward()
        grads.append((float(loss.detach()), [p.grad.clone() for p in model.parameters()]))
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-6)
    for a, b in zip(grads[0][1], grads[1][1]):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.slow
def test_full_compile_packed_equals_eager_over_several_buckets(monkeypatch, tmp_path):
    """learner.compile=full with padding_free (rows packed into 24-token sequences outside the graph) vs the eager
    padded learner on one mini-batch split into micro-batches of 4 rows whose lengths fall in three buckets of 8
    with the per-row loss aggregation: same metrics, gradients and log-probs to fp32 tolerance, one compiled graph
    per pass kind over all three; the HF module stays eager outside the learner (a cached decode compiles nothing). The padded
    full graph is checked against eager end to end in tests/integration/test_compile_full_cli.py (one cold compile
    each: make test's time)."""
    agg = "seq_mean_token_mean"
    import torch._dynamo.utils as dynamo_utils

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    batch = random_batch(12, 2, lambda i: 1 + (7 * i) % 19, seed=5)  # rows of 3..23 tokens
    old = 0.05 * torch.randn(batch.loss_mask.shape, generator=torch.Generator().manual_seed(0)) * batch.loss_mask
    batch = batch.with_logprobs(old_logp=old)
    out = {}
    for mode in ("false", "full"):
        model = qwen2()
        cfg = LearnerConfig(micro_rollouts=4, grad_clip=0.0, warmup_steps=0, compile=mode, compile_pad_multiple=8)
        if mode == "full":
            cfg = replace(cfg, padding_free=True, pack_tokens=24)
        learner = TorchLearner(model, cfg, 1e-3, AlgoConfig(loss_agg=agg, clip_low=0.02, clip_high=0.02), 1.0)
        lengths = {int(m.input_ids.shape[1]) for _, m in learner._micro_batches(batch)}
        sums: dict[str, float] = {}
        from two_grpo.learner.step import accumulate

        before = dynamo_utils.counters["stats"]["unique_graphs"]
        for _, micro in learner._micro_batches(batch):
            accumulate(sums, learner._backward(micro, batch.n_tokens, float(len(batch))))
        grads = [p.grad.clone() for p in model.parameters()]
        out[mode] = (sums, grads, learner.logprobs(batch))
        compiled_graphs = dynamo_utils.counters["stats"]["unique_graphs"] - before
    assert len({(n + 7) // 8 for n in lengths}) == 3, lengths  # three buckets: 8, 16, 24
    # rows, lengths and packed-sequence counts are dynamic from the first compile: one graph for the loss and one
    # for the no-grad log-probs over all three buckets (not a static graph, then a dynamic one, then more)
    assert compiled_graphs == 2, compiled_graphs
    # the full learner packs (its graph sees 24-token sequences), and short rows share them
    from two_grpo.learner.packing import pack

    assert learner.full.pack_tokens == 24
    layouts = [(m, learner.full._pack(m)) for _, m in learner._micro_batches(batch)]
    assert all(p.input_ids.shape[1] == 24 for _, p in layouts)
    assert sum(p.input_ids.shape[0] for _, p in layouts) < len(batch)
    m, p = layouts[-1]
    ref = pack(m.input_ids, m.attention_mask, 24, multiple=24).input_ids
    assert ref.shape[0] == 1 and p.input_ids.shape[0] == 2  # one sequence gets an unused padding one (no 1-size)
    assert torch.equal(p.input_ids[:1], ref) and not p.input_ids[1].any()
    (s_ref, g_ref, lp_ref), (s_c, g_c, lp_c) = out["false"], out["full"]
    assert s_ref["loss/clip_frac_low_sum"] + s_ref["loss/clip_frac_high_sum"] > 0  # the clip branch is exercised
    assert s_c.keys() == s_ref.keys()
    for key in s_ref:
        assert s_c[key] == pytest.approx(s_ref[key], rel=1e-5, abs=1e-6), key
    for a, b in zip(g_c, g_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (a - b).abs().max()
    assert lp_c.shape == lp_ref.shape and torch.allclose(lp_c, lp_ref, atol=1e-5)
    graphs = dynamo_utils.counters["stats"]["unique_graphs"]
    with torch.no_grad():
        model(input_ids=torch.randint(4, 50, (3, 41)), use_cache=True)
    assert dynamo_utils.counters["stats"]["unique_graphs"] == graphs

"""learner.shared_prefix: a group's rows packed around one copy of their prompt give the padded path's per-token
log-probs, loss and gradients (fp32 tolerance), whatever the row order, cap and attention kernel; the model runs
over fewer tokens; without the layout's own mask the log-probs differ (the test can fail)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_packing import assert_loss_and_gradient_equal_padded, assert_same_step, learner_step, qwen2

from two_grpo.config.schema import AlgoConfig, LearnerConfig
from two_grpo.data.batch import Rollout, collate
from two_grpo.learner.packing import Layout
from two_grpo.learner.prefix_sharing import pack_shared, prompt_lengths
from two_grpo.learner.step import forward_logprobs
from two_grpo.learner.torch_learner import TorchLearner


def grouped(groups=4, group_size=3, seed=0, empty_row=True):
    """`groups` prompts of 2..5 tokens, `group_size` rollouts each with 1..8 response tokens (ids 4..49); with
    `empty_row` one extra row whose response is empty (nothing scored: packed as a plain row)."""
    g = torch.Generator().manual_seed(seed)
    rollouts = []
    for gid in range(groups):
        prompt = torch.randint(4, 50, (2 + gid % 4,), generator=g).tolist()
        for k in range(group_size):
            rollouts.append(
                Rollout(group_id=gid, prompt_id=gid, prompt_token_ids=prompt,
                        token_ids=torch.randint(4, 50, (1 + (3 * gid + 5 * k) % 8,), generator=g).tolist(),
                        text="", finish_reason="stop", advantage=float(torch.randn(1, generator=g)))
            )  # fmt: skip
    if empty_row:
        rollouts.append(Rollout(group_id=groups, prompt_id=groups, prompt_token_ids=[7, 8, 9], token_ids=[],
                                text="", finish_reason="length", advantage=0.0))  # fmt: skip
    return collate(rollouts, pad_id=0)


def test_layout_hand_checked():
    # rows: [5 6 | 7], [5 6 | 8 9], [4 | 3]: the first two share the prompt [5 6]; the last is a plain row
    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 8, 9], [4, 3, 0, 0]])
    attn = (ids != 0).long()
    loss_mask = torch.tensor([[0, 1, 0], [0, 1, 1], [1, 0, 0]], dtype=torch.float32)
    assert prompt_lengths(loss_mask) == [2, 2, 1]
    p = pack_shared(ids, attn, loss_mask)
    assert p.input_ids.tolist() == [[5, 6, 7, 8, 9, 4, 3]]
    assert p.position_ids.tolist() == [[0, 1, 2, 2, 3, 0, 1]]
    assert p.row_seq.tolist() == [0, 0, 0] and p.row_offset.tolist() == [2, 3, 5]
    assert p.shared_len.tolist() == [2, 2, 0] and p.prefix_offset.tolist() == [0, 0, 5]
    allowed = p.attn_mask[0, 0].int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0, 0],  # 5
        [1, 1, 0, 0, 0, 0, 0],  # 6
        [1, 1, 1, 0, 0, 0, 0],  # 7: the prompt and itself
        [1, 1, 0, 1, 0, 0, 0],  # 8: the prompt, not row 0's response
        [1, 1, 0, 1, 1, 0, 0],  # 9
        [0, 0, 0, 0, 0, 1, 0],  # 4: a plain row of its own
        [0, 0, 0, 0, 0, 1, 1],  # 3
    ]
    # padded (row, col) -> packed position: col < prompt length reads the shared copy
    seq, at = p.index(torch.tensor([1, 1, 1, 2]), torch.tensor([0, 1, 3, 1]))
    assert p.input_ids[seq, at].tolist() == [5, 6, 9, 3]
    capped = pack_shared(ids, attn, loss_mask, pack_tokens=4, multiple=4)  # 5 tokens > 4: a second prompt copy
    assert capped.input_ids.tolist() == [[5, 6, 8, 9], [5, 6, 7, 0], [4, 3, 0, 0]]
    assert capped.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 0, 1]]
    assert not capped.attn_mask[1, 0, 3, :3].any()  # the tail padding attends to itself only


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("chunk", [1024, -1])  # the body+head path and the full-logits path (compile=full's)
@pytest.mark.parametrize("pack_tokens", [0, 16, 10_000])
def test_shared_logprobs_equal_padded_and_run_fewer_tokens(attn, chunk, pack_tokens):
    model, batch = qwen2(attn), grouped()
    ref, _ = forward_logprobs(model, batch, 1.0, chunk_tokens=chunk)
    got, _ = forward_logprobs(model, batch, 1.0, chunk_tokens=chunk, layout=Layout(pack_tokens, shared_prefix=True))
    m = batch.loss_mask
    assert (ref * m).abs().sum() > 0
    assert torch.allclose(got * m, ref * m, atol=1e-5), (got * m - ref * m).abs().max()
    perm = torch.randperm(len(batch), generator=torch.Generator().manual_seed(1))
    shuffled, _ = forward_logprobs(model, batch.select(perm), 1.0, chunk_tokens=chunk,
                                   layout=Layout(pack_tokens, shared_prefix=True))  # fmt: skip
    assert torch.allclose(shuffled * m[perm], ref[perm] * m[perm], atol=1e-5)  # invariant to the row order
    layout = pack_shared(batch.input_ids, batch.attention_mask, batch.loss_mask)
    real = int(batch.attention_mask.sum())
    saved = sum(prompt_lengths(batch.loss_mask)[:12]) - sum(2 + gid % 4 for gid in range(4))  # 2 of 3 copies
    assert layout.input_ids.numel() == real - saved  # one sequence, no padding: every shared token counted once


def test_without_the_layout_mask_the_logprobs_differ():
    """The same packed tokens with transformers' own position-id mask: each response restarts its positions at the
    prompt's end, so it reads as a new sequence that cannot see its prompt, and the log-probs change."""
    model, batch = qwen2(), grouped()
    ref, _ = forward_logprobs(model, batch, 1.0)
    layout = pack_shared(batch.input_ids, batch.attention_mask, batch.loss_mask)
    unmasked = dataclasses.replace(layout, attn_mask=None)
    got, _ = forward_logprobs(model, batch, 1.0, layout=unmasked)
    m = batch.loss_mask.bool()
    assert not torch.allclose(got[m], ref[m], atol=1e-3)


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_shared_loss_and_gradient_equal_padded(agg):
    layouts = [Layout(0, shared_prefix=True), Layout(12, shared_prefix=True)]
    assert_loss_and_gradient_equal_padded(grouped(), agg, layouts)


def test_torch_learner_shared_prefix_step_equals_padded():
    """The learner with shared_prefix keeps a group's rows in one micro-batch (so they share the copy): same
    old log-probs, loss and gradients as the padded learner over micro-batches of 4 rows."""
    batch = grouped(groups=5, group_size=4, empty_row=False)
    cfg = LearnerConfig(micro_rollouts=4, grad_clip=0.0, warmup_steps=0, pack_tokens=32)
    shared = dataclasses.replace(cfg, padding_free=True, shared_prefix=True)
    micros = TorchLearner(qwen2(), shared, 1e-3, AlgoConfig(), 1.0)._micro_batches(batch)
    assert all(len(set(m.group_ids.tolist())) == 1 for _, m in micros)  # whole groups, one per micro-batch
    assert_same_step(batch, learner_step(batch, cfg), learner_step(batch, shared))


def test_an_attention_kernel_without_custom_masks_is_named():
    model, batch = qwen2(), grouped()
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="learner.shared_prefix: attention implementation 'flash_attention_2'"):
        forward_logprobs(model, batch, 1.0, layout=Layout(0, shared_prefix=True))


def test_the_torch_learner_defaults_to_shared_prefix_and_padding_free_turns_it_off(compose):
    """conf/learner/torch.yaml (the embedded default) packs around shared prompts; learner.padding_free=false is the
    padded layout whatever shared_prefix says; DeepSpeed learners keep the padded layout."""
    lc = compose([]).learner
    assert (lc.backend, lc.padding_free, lc.shared_prefix, lc.segment_attention, lc.pack_tokens) == (
        "torch", True, True, True, 0)  # fmt: skip
    assert TorchLearner(qwen2(), lc, 1e-3, AlgoConfig(), 1.0).layout == Layout(0, shared_prefix=True,
                                                                              segment_attention=True)  # fmt: skip
    off = compose(["learner.padding_free=false"]).learner
    learner = TorchLearner(qwen2(), off, 1e-3, AlgoConfig(), 1.0)
    assert learner.layout == Layout(pack_tokens=None, shared_prefix=False)
    assert not compose(["learner=zero2"]).learner.padding_free


@pytest.mark.slow
def test_full_compile_shared_equals_eager_padded(monkeypatch, tmp_path):
    """learner.compile=full over rows packed around shared prompts (the layout and its mask built outside the
    graph) vs the eager padded learner: same metrics, gradients and log-probs to fp32 tolerance, one graph per
    pass kind over micro-batches of different sizes."""
    import torch._dynamo.utils as dynamo_utils

    from two_grpo.learner.step import accumulate

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    batch = grouped(groups=5, group_size=3)
    old = 0.05 * torch.randn(batch.loss_mask.shape, generator=torch.Generator().manual_seed(0)) * batch.loss_mask
    batch = batch.with_logprobs(old_logp=old)
    out = {}
    for mode in ("false", "full"):
        model = qwen2()
        cfg = LearnerConfig(micro_rollouts=7, grad_clip=0.0, warmup_steps=0, compile=mode, padding_free=mode == "full",
                            shared_prefix=True, pack_tokens=24)  # fmt: skip
        learner = TorchLearner(model, cfg, 1e-3, AlgoConfig(clip_low=0.02, clip_high=0.02), 1.0)
        sums: dict[str, float] = {}
        before = dynamo_utils.counters["stats"]["unique_graphs"]
        micros = learner._micro_batches(batch)
        for _, micro in micros:
            accumulate(sums, learner._backward(micro, batch.n_tokens, float(len(batch))))
        out[mode] = (sums, [p.grad.clone() for p in model.parameters()], learner.logprobs(batch))
        graphs = dynamo_utils.counters["stats"]["unique_graphs"] - before
    assert len({len(idx) for idx, _ in micros}) > 1  # micro-batches of different row counts share the graphs
    assert all(learner.full._pack(m).attn_mask is not None for _, m in micros)  # the shared layout was compiled
    assert graphs == 2, graphs
    (s_ref, g_ref, lp_ref), (s_c, g_c, lp_c) = out["false"], out["full"]
    assert s_ref["loss/clip_frac_low_sum"] + s_ref["loss/clip_frac_high_sum"] > 0
    for key in s_ref:
        assert s_c[key] == pytest.approx(s_ref[key], rel=1e-5, abs=1e-6), key
    for a, b in zip(g_c, g_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (a - b).abs().max()
    assert torch.allclose(lp_c, lp_ref, atol=1e-5)

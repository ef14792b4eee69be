"""learner.segment_attention: attention over packed rows by segments gives the padded path's log-probs, loss and
gradients (fp32 tolerance) for plain and shared-prefix packing, sdpa and eager models, any cap and row order; its
visibility is the dense mask's, position for position; the model's attention implementation is restored; models
it does not know keep the dense mask. A layout that hides the prompt changes the log-probs (the test can fail)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_packing import assert_loss_and_gradient_equal_padded, assert_same_step, learner_step, qwen2, ragged
from test_prefix_sharing import grouped

import two_grpo.learner.segment_attention as seg_attn
from two_grpo.config.schema import LearnerConfig
from two_grpo.learner.packing import Layout, pack
from two_grpo.learner.prefix_sharing import pack_shared
from two_grpo.learner.segment_attention import Segments, segments_reason
from two_grpo.learner.step import forward_logprobs


def visible_keys(segments: Segments) -> dict[int, set[int]]:
    """Flat query position -> the flat key positions it attends (real queries only)."""
    out: dict[int, set[int]] = {}
    vis = segments.visible[:, 0]
    for j in range(vis.shape[0]):
        for i in range(vis.shape[1]):
            if segments.q_valid[j, i]:
                keys = segments.k_index[j][vis[j, i]]
                out[int(segments.q_index[j, i])] = set(keys.tolist())
    return out


def test_segments_hand_checked():
    # rows [5 6 | 7], [5 6 | 8 9], [4 | 3] packed as [5 6 7 8 9 4 3]: one prompt copy (positions 0-1), the responses
    # at 2 and 3-4, a plain row at 5-6
    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 8, 9], [4, 3, 0, 0]])
    attn = (ids != 0).long()
    loss_mask = torch.tensor([[0, 1, 0], [0, 1, 1], [1, 0, 0]], dtype=torch.float32)
    p = pack_shared(ids, attn, loss_mask, segments=True)
    assert p.attn_mask is None  # no dense mask is built
    assert visible_keys(p.segments) == {
        0: {0}, 1: {0, 1},  # the prompt copy: causal over itself
        2: {0, 1, 2},  # 7: the prompt and itself
        3: {0, 1, 3}, 4: {0, 1, 3, 4},  # 8, 9: the prompt, not row 0's response
        5: {5}, 6: {5, 6},  # the plain row
    }  # fmt: skip
    assert sorted(p.segments.out_index.tolist()) == list(range(7))  # every real token written once
    assert p.segments.visible[:, 0][~p.segments.q_valid].sum(-1).eq(1).all()  # a padding query sees one key: no NaN
    q = pack(ids, attn, pack_tokens=3, multiple=4, segments=True)  # [row 1], [row 0], [row 2], each 4 wide
    assert visible_keys(q.segments) == {0: {0}, 1: {0, 1}, 2: {0, 1, 2}, 3: {0, 1, 2, 3},
                                        4: {4}, 5: {4, 5}, 6: {4, 5, 6}, 8: {8}, 9: {8, 9}}  # fmt: skip


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("pack_tokens", [0, 12, 10_000])
def test_segment_visibility_is_the_dense_masks(shared, pack_tokens):
    """Two independent constructions of who attends whom agree on every real position."""
    batch = grouped(groups=5, group_size=3)
    if shared:
        dense = pack_shared(batch.input_ids, batch.attention_mask, batch.loss_mask, pack_tokens)
        by_seg = pack_shared(batch.input_ids, batch.attention_mask, batch.loss_mask, pack_tokens, segments=True)
        mask = dense.attn_mask[:, 0]  # [S, T, T]
    else:
        dense = pack(batch.input_ids, batch.attention_mask, pack_tokens)
        by_seg = pack(batch.input_ids, batch.attention_mask, pack_tokens, segments=True)
        mask = None
    assert torch.equal(dense.input_ids, by_seg.input_ids) and torch.equal(dense.position_ids, by_seg.position_ids)
    width, seen = dense.input_ids.shape[1], visible_keys(by_seg.segments)
    real = {int(s) * width + int(o) + t for r, (s, o) in enumerate(zip(dense.row_seq, dense.row_offset))
            for t in range(int(batch.attention_mask[r].sum()) - (int(dense.shared_len[r]) if shared else 0))}  # fmt: skip
    assert real <= set(seen)
    for q, keys in seen.items():
        s, t = divmod(q, width)
        if mask is not None:
            want = {s * width + k for k in torch.nonzero(mask[s, t]).squeeze(1).tolist()}
        else:  # plain packing: the row's own earlier tokens (position ids restart at each row)
            pos = dense.position_ids[s]
            want = {s * width + k for k in range(t - int(pos[t]), t + 1)}
        assert keys == want, q


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("chunk", [1024, -1])
@pytest.mark.parametrize("pack_tokens", [0, 16, 10_000])
@pytest.mark.parametrize("shared", [True, False])
def test_segment_logprobs_equal_padded(attn, chunk, pack_tokens, shared, monkeypatch):
    calls = []
    real = seg_attn.segment_attention_forward
    monkeypatch.setattr(seg_attn, "segment_attention_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    model, batch = qwen2(attn), grouped()
    layout = Layout(pack_tokens, shared_prefix=shared, segment_attention=True)
    ref, _ = forward_logprobs(model, batch, 1.0, chunk_tokens=chunk)
    got, _ = forward_logprobs(model, batch, 1.0, chunk_tokens=chunk, layout=layout)
    assert len(calls) == model.config.num_hidden_layers  # every layer attended by segments
    assert model.config._attn_implementation == attn  # restored
    m = batch.loss_mask
    assert (ref * m).abs().sum() > 0 and torch.isfinite(got).all()
    assert torch.allclose(got * m, ref * m, atol=1e-5), (got * m - ref * m).abs().max()
    perm = torch.randperm(len(batch), generator=torch.Generator().manual_seed(1))
    shuffled, _ = forward_logprobs(model, batch.select(perm), 1.0, chunk_tokens=chunk, layout=layout)
    assert torch.allclose(shuffled * m[perm], ref[perm] * m[perm], atol=1e-5)


def test_segments_that_hide_the_prompt_change_the_logprobs():
    model, batch = qwen2(), grouped()
    p = pack_shared(batch.input_ids, batch.attention_mask, batch.loss_mask, segments=True)
    seg = p.segments
    keys, first = torch.arange(seg.visible.shape[-1]), torch.arange(seg.visible.shape[2])[:, None] == 0
    hidden = dataclasses.replace(seg, visible=seg.visible & ((keys > 0) | first))  # later queries lose key 0
    ref, _ = forward_logprobs(model, batch, 1.0)
    got, _ = forward_logprobs(model, batch, 1.0, layout=dataclasses.replace(p, segments=hidden))
    m = batch.loss_mask.bool()
    assert torch.isfinite(got).all() and not torch.allclose(got[m], ref[m], atol=1e-3)


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_segment_loss_and_gradient_equal_padded(agg):
    assert_loss_and_gradient_equal_padded(
        grouped(),
        agg,
        [Layout(0, shared_prefix=True, segment_attention=True), Layout(12, shared_prefix=True, segment_attention=True)],
    )
    assert_loss_and_gradient_equal_padded(ragged(), agg, [Layout(0, segment_attention=True)])


def test_torch_learner_segment_step_equals_padded():
    batch = grouped(groups=5, group_size=4, empty_row=False)
    cfg = LearnerConfig(micro_rollouts=4, grad_clip=0.0, warmup_steps=0)
    segs = dataclasses.replace(cfg, padding_free=True, shared_prefix=True, segment_attention=True, pack_tokens=0)
    assert_same_step(batch, learner_step(batch, cfg), learner_step(batch, segs))


def test_models_it_does_not_know_keep_the_dense_mask(monkeypatch):
    model, batch = qwen2(), grouped()
    assert segments_reason(model) is None
    model.config.use_sliding_window = True
    assert "sliding window" in segments_reason(model)
    model.config.use_sliding_window = False
    model.config.model_type = "gemma2"  # softcapped attention: not plain
    assert "not gemma2" in segments_reason(model)
    monkeypatch.setattr(seg_attn, "segment_attention_forward", lambda *a, **k: pytest.fail("segments used"))
    ref, _ = forward_logprobs(model, batch, 1.0)
    got, _ = forward_logprobs(model, batch, 1.0, layout=Layout(0, shared_prefix=True, segment_attention=True))
    m = batch.loss_mask
    assert torch.allclose(got * m, ref * m, atol=1e-5)


def test_the_attention_implementation_is_restored_after_an_error():
    model, batch = qwen2(), grouped()
    body = model.get_decoder()
    body.layers[0].mlp.register_forward_hook(lambda *_: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        forward_logprobs(model, batch, 1.0, layout=Layout(0, segment_attention=True))
    assert model.config._attn_implementation == "sdpa"

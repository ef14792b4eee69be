"""learner.padding_free: rows packed end to end with position_ids restarts give the padded path's per-token
log-probs, loss and gradients (fp32 tolerance), whatever the row order and packing cap."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from batches import random_batch
from models import random_model, small_config

from two_grpo.config.schema import AlgoConfig, LearnerConfig
from two_grpo.learner.packing import Layout, pack
from two_grpo.learner.step import forward_logprobs, micro_batch_loss
from two_grpo.learner.torch_learner import TorchLearner


def ragged(n=10, seed=0):
    return random_batch(n, per_group=2, response_len=lambda i: 1 + (5 * i) % 9, seed=seed)


def qwen2(attn="sdpa"):
    return random_model(small_config(50), attn=attn)


def test_pack_places_rows_end_to_end_hand_checked():
    ids = torch.tensor([[5, 6, 0], [7, 8, 9], [4, 0, 0]])
    mask = (ids != 0).long()
    p = pack(ids, mask)  # one sequence, rows in order
    assert p.input_ids.tolist() == [[5, 6, 7, 8, 9, 4]]
    assert p.position_ids.tolist() == [[0, 1, 0, 1, 2, 0]]
    assert p.row_seq.tolist() == [0, 0, 0] and p.row_offset.tolist() == [0, 2, 5]
    r = pack(ids, mask, multiple=4)  # the tail padding is a row of its own: positions restart at 0
    assert r.input_ids.tolist() == [[5, 6, 7, 8, 9, 4, 0, 0]] and r.position_ids.tolist() == [[0, 1, 0, 1, 2, 0, 0, 1]]
    q = pack(ids, mask, pack_tokens=3, multiple=4)  # first fit by descending length: [row 1], [row 0, row 2]
    assert q.input_ids.tolist() == [[7, 8, 9, 0], [5, 6, 4, 0]]
    assert q.position_ids.tolist() == [[0, 1, 2, 0], [0, 1, 0, 0]]
    assert q.row_seq.tolist() == [1, 0, 1] and q.row_offset.tolist() == [0, 0, 2]
    seq, at = q.index(torch.tensor([2, 1]), torch.tensor([0, 2]))
    assert q.input_ids[seq, at].tolist() == [4, 9]


def test_pack_refuses_left_padding():
    with pytest.raises(ValueError, match="right-padded"):
        pack(torch.tensor([[0, 5, 6]]), torch.tensor([[0, 1, 1]]))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("chunk", [1024, -1])  # the body+head path and the legacy full-logits path
@pytest.mark.parametrize("pack_tokens", [0, 16, 10_000])  # one sequence (vectorised), capped, one bin (loop)
def test_packed_logprobs_equal_padded(attn, chunk, pack_tokens):
    model, batch = qwen2(attn), ragged()
    ref, _ = forward_logprobs(model, batch, 1.0, chunk_tokens=chunk)
    got, _ = forward_logprobs(model, batch, 1.0, chunk_tokens=chunk, layout=Layout(pack_tokens))
    m = batch.loss_mask
    assert (ref * m).abs().sum() > 0
    assert torch.allclose(got * m, ref * m, atol=1e-5), (got * m - ref * m).abs().max()
    perm = torch.randperm(len(batch), generator=torch.Generator().manual_seed(1))
    shuffled, _ = forward_logprobs(model, batch.select(perm), 1.0, chunk_tokens=chunk, layout=Layout(pack_tokens))
    assert torch.allclose(shuffled * m[perm], ref[perm] * m[perm], atol=1e-5)  # invariant to the row order


@pytest.mark.parametrize("chunk", [1024, -1])
def test_a_prebuilt_fixed_width_layout_equals_padded(chunk):
    """learner.compile=full packs outside its graph (first-fit into sequences of one width) and passes the Packed
    layout in: the same log-probs as the padded path, and every packed sequence is that width."""
    from two_grpo.learner.packing import pack

    model, batch = qwen2(), ragged()
    width = int(batch.attention_mask.sum(dim=1).max())
    layout = pack(batch.input_ids, batch.attention_mask, width, multiple=width)
    assert layout.input_ids.shape[1] == width and layout.input_ids.shape[0] < len(batch)  # rows share sequences
    ref, _ = forward_logprobs(model, batch, 1.0, chunk_tokens=chunk)
    got, _ = forward_logprobs(model, batch, 1.0, chunk_tokens=chunk, layout=layout)
    m = batch.loss_mask
    assert torch.allclose(got * m, ref * m, atol=1e-5), (got * m - ref * m).abs().max()


@pytest.mark.parametrize("chunk", [1024, -1])
@pytest.mark.parametrize("pack_tokens", [None, 0])
def test_lengths_padded_to_a_multiple_change_nothing(chunk, pack_tokens):
    """learner.compile pads the model's input length up to compile_pad_multiple: same log-probs."""
    model, batch = qwen2(), ragged()
    ref, _ = forward_logprobs(model, batch, 1.0, chunk_tokens=chunk)
    got, _ = forward_logprobs(model, batch, 1.0, chunk_tokens=chunk, layout=Layout(pack_tokens, pad_multiple=32))
    assert got.shape == ref.shape
    assert torch.allclose(got * batch.loss_mask, ref * batch.loss_mask, atol=1e-5)


def test_packing_actually_isolates_rows():
    """Without the position_ids restarts (one plain causal sequence) the log-probs differ: the test can fail."""
    model, batch = qwen2(), ragged()
    p = pack(batch.input_ids, batch.attention_mask)
    ref, _ = forward_logprobs(model, batch, 1.0)
    plain = torch.arange(p.input_ids.shape[1])[None]
    hidden = []
    hook = model.get_decoder().register_forward_hook(lambda _m, _a, out: hidden.append(out[0]))
    model(input_ids=p.input_ids, position_ids=plain, use_cache=False)
    hook.remove()
    rows, cols = batch.loss_mask.nonzero(as_tuple=True)
    h = hidden[-1][p.index(rows, cols)]
    leaked = torch.log_softmax(model.lm_head(h), -1).gather(1, batch.input_ids[rows, cols + 1][:, None])[:, 0]
    assert not torch.allclose(leaked, ref[rows, cols], atol=1e-3)


def assert_loss_and_gradient_equal_padded(batch, agg: str, layouts: list) -> None:
    """micro_batch_loss of `batch` under each layout against the padded rows: the same loss and gradients
    (clipping and the entropy bonus exercised)."""
    algo = AlgoConfig(loss_agg=agg, entropy_coef=0.01)
    n_tok, n_seq = batch.n_tokens, float(len(batch))
    out = []
    for layout in [None, *layouts]:
        model = qwen2()
        old = forward_logprobs(model, batch, 1.0)[0].detach() + 0.05 * batch.loss_mask  # ratios != 1: clipping
        loss, _ = micro_batch_loss(model, batch.with_logprobs(old_logp=old), algo, 1.0, n_tok, n_seq, layout=layout)
        loss.backward()
        out.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l_ref, g_ref), *rest = out
    assert any(g.abs().sum() > 0 for g in g_ref.values())
    for loss, grads in rest:
        assert loss == pytest.approx(l_ref, abs=1e-6)
        for name in g_ref:
            assert torch.allclose(grads[name], g_ref[name], atol=1e-6, rtol=1e-4), name


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_packed_loss_and_gradient_equal_padded(agg):
    assert_loss_and_gradient_equal_padded(ragged(), agg, [Layout(0), Layout(20)])


def learner_step(batch, cfg: LearnerConfig) -> tuple:
    """(old log-probs, metrics, gradients) of one TorchLearner mini-batch step on qwen2() (the update not applied),
    the old log-probs shifted so the ratios are not 1."""
    model = qwen2()
    learner = TorchLearner(model, cfg, 1e-3, AlgoConfig(), temperature=1.0)
    learner.optimizer.step = lambda *a, **k: None
    old = learner.logprobs(batch)
    metrics = learner.train_minibatch(batch.with_logprobs(old_logp=old + 0.05 * batch.loss_mask))
    return old, metrics, {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same_step(batch, ref: tuple, got: tuple) -> None:
    """Two learner_step results: the same old log-probs, policy loss and gradients to fp32 tolerance."""
    (o_ref, m_ref, g_ref), (o, m, g) = ref, got
    assert torch.allclose(o * batch.loss_mask, o_ref * batch.loss_mask, atol=1e-5)
    assert m["loss/policy"] == pytest.approx(m_ref["loss/policy"], abs=1e-6)
    assert any(x.abs().sum() > 0 for x in g_ref.values())
    for name in g_ref:
        assert torch.allclose(g[name], g_ref[name], atol=1e-6, rtol=1e-4), name


def test_torch_learner_padding_free_step_equals_padded():
    batch = ragged(16)
    cfg = LearnerConfig(micro_rollouts=6, grad_clip=0.0, warmup_steps=0, pack_tokens=40)
    ref = learner_step(batch, cfg)
    assert_same_step(batch, ref, learner_step(batch, replace(cfg, padding_free=True)))

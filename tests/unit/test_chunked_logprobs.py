"""The memory-safe learner path against its references: response-only, chunked log-probs and entropy equal the
full-logits computation (values and gradients, fp32), chunk size changes nothing, and a token-budget micro-batch
split gives the one-micro-batch gradient. Run: pytest tests/unit/test_chunked_logprobs.py"""

import pytest
import torch
from batches import random_batch
from models import random_model, small_config

from two_grpo.algo.logprobs import chunked_head_logprobs, token_entropy, token_logprobs
from two_grpo.config.schema import AlgoConfig, LearnerConfig
from two_grpo.learner.micro import micro_batches
from two_grpo.learner.step import forward_logprobs, micro_batch_loss
from two_grpo.learner.torch_learner import TorchLearner


def hand_built(n=37, hidden=6, vocab=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hidden, generator=g, dtype=torch.float64).float().requires_grad_(True)
    w = torch.randn(vocab, hidden, generator=g).requires_grad_(True)
    y = torch.randint(0, vocab, (n,), generator=g)
    return h, w, y


def entropy_with_grad(logits, temperature):
    lp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return -(lp.exp() * lp).sum(-1)


@pytest.mark.parametrize("chunk", [0, 1, 5, 37, 100])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_head_matches_full_logits_values_and_gradients(chunk, temperature):
    h, w, y = hand_built()
    seed = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(1))  # a generic upstream gradient
    ref_logits = h @ w.T
    ref_lp = token_logprobs(ref_logits[None], y[None], temperature)[0]
    ref_ent = entropy_with_grad(ref_logits, temperature)
    assert torch.allclose(token_entropy(ref_logits, temperature), ref_ent, atol=1e-6)
    ref_gh, ref_gw = torch.autograd.grad((ref_lp * seed).sum() + (ref_ent * seed.flip(0)).sum(), [h, w])

    lp, ent = chunked_head_logprobs(h, y, lambda x: x @ w.T, temperature, chunk, entropy=True, entropy_grad=True)
    assert torch.allclose(lp, ref_lp, atol=1e-6) and torch.allclose(ent, ref_ent, atol=1e-6)
    gh, gw = torch.autograd.grad((lp * seed).sum() + (ent * seed.flip(0)).sum(), [h, w])
    assert torch.allclose(gh, ref_gh, atol=1e-6, rtol=1e-5) and torch.allclose(gw, ref_gw, atol=1e-6, rtol=1e-5)
    assert ref_gw.abs().sum() > 0


def test_entropy_without_grad_is_a_metric_only():
    h, w, y = hand_built()
    lp, ent = chunked_head_logprobs(h, y, lambda x: x @ w.T, 1.0, 4, entropy=True, entropy_grad=False)
    assert lp.requires_grad and not ent.requires_grad
    lp_only, none = chunked_head_logprobs(h, y, lambda x: x @ w.T, 1.0, 4, entropy=False)
    assert none is None and torch.equal(lp_only, lp)


def random_qwen2():
    return random_model(small_config(97))


def ragged(seed=0):
    return random_batch(7, per_group=7, response_len=lambda i: 1 + (i * 5) % 9, seed=seed)


@pytest.mark.parametrize("chunk", [0, 1, 3, 1024])
def test_forward_logprobs_response_only_matches_the_full_logits_reference(chunk):
    model, batch = random_qwen2(), ragged()
    mask = batch.loss_mask
    seed = torch.randn(mask.shape, generator=torch.Generator().manual_seed(2)) * mask
    results = []
    for c in (-1, chunk):
        model.zero_grad(set_to_none=True)
        lp, ent = forward_logprobs(model, batch, 0.9, with_entropy=True, chunk_tokens=c, entropy_grad=True)
        ((lp * seed).sum() + (ent * seed).sum()).backward()
        results.append((lp.detach(), ent.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (lp_ref, ent_ref, g_ref), (lp, ent, g) = results
    assert torch.allclose(lp, lp_ref * mask, atol=1e-6)  # 0 off the response, the reference's value on it
    assert torch.allclose(ent, ent_ref * mask, atol=1e-6)
    assert torch.equal(lp[mask == 0], torch.zeros_like(lp[mask == 0]))
    for name in g_ref:
        assert torch.allclose(g[name], g_ref[name], atol=1e-6, rtol=1e-5), name
    assert all(v.abs().sum() > 0 for v in g.values())  # every parameter is reached (the head through chunks)


def test_the_output_head_only_sees_response_positions():
    model, batch = random_qwen2(), ragged()
    seen = []
    handle = model.lm_head.register_forward_hook(lambda _m, a, _o: seen.append(a[0].shape))
    with torch.no_grad():
        forward_logprobs(model, batch, 1.0, chunk_tokens=4)
    handle.remove()
    n_resp = int(batch.loss_mask.sum())
    # the model's own head runs on 1 position per row (logits_to_keep=1), then chunks of <= 4 response tokens
    assert seen[0] == (len(batch), 1, 32)
    assert [s[0] for s in seen[1:]] == [4] * (n_resp // 4) + ([n_resp % 4] if n_resp % 4 else [])


def test_an_empty_loss_mask_still_reaches_every_parameter_with_zero_gradient():
    model, batch = random_qwen2(), ragged()
    batch.loss_mask.zero_()
    lp, _ = forward_logprobs(model, batch, 1.0, chunk_tokens=2)
    (lp * batch.loss_mask).sum().backward()  # a DeepSpeed dummy micro-batch: collectives need every gradient
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in model.parameters())


def test_entropy_bonus_has_a_gradient():
    """Before the chunked path, the entropy was computed without autograd, so entropy_coef changed the loss
    value but not the update."""
    batch = ragged()
    grads = []
    for coef in (0.0, 0.5):
        model = random_qwen2()
        loss, _ = micro_batch_loss(model, batch, AlgoConfig(entropy_coef=coef), 1.0, batch.n_tokens, len(batch))
        loss.backward()
        grads.append(model.model.norm.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1], atol=1e-6)


def test_micro_tokens_packs_by_padded_slots():
    batch = ragged()  # row lengths: prompt 2-4 + response 1-9
    lengths = batch.attention_mask.sum(1)
    for budget in (1, 12, 30):
        subs = micro_batches(batch, rows=64, sort_by_length=True, max_tokens=budget)
        assert sorted(torch.cat([i for i, _ in subs]).tolist()) == list(range(len(batch)))
        for idx, sub in subs:  # within the budget, or one row alone
            assert sub.input_ids.numel() <= budget or len(idx) == 1
            assert sub.input_ids.shape[1] == int(lengths[idx].max())
    assert len(micro_batches(batch, rows=64, sort_by_length=True, max_tokens=1)) == len(batch)
    assert len(micro_batches(batch, rows=3, sort_by_length=False, max_tokens=10**6)) == 3  # rows still cap


def learner(micro_rollouts=64, micro_tokens=0, chunk=1024):
    model = random_qwen2()
    cfg = LearnerConfig(
        micro_rollouts=micro_rollouts, micro_tokens=micro_tokens, logits_chunk_tokens=chunk, grad_clip=0.0
    )
    out = TorchLearner(model, cfg, 1e-3, AlgoConfig(), temperature=1.0)
    out.optimizer.step = lambda *a, **k: None  # compare gradients only
    return model, out


@pytest.mark.parametrize("micro_tokens,chunk", [(0, 0), (25, 1024), (12, 3), (1, 1)])
def test_token_budget_micro_batches_and_chunks_give_the_one_micro_batch_gradient(micro_tokens, chunk):
    batch = ragged()
    ref_model, ref = learner(chunk=-1)
    old = ref.logprobs(batch) + 0.05 * batch.loss_mask  # ratios != 1: clipping paths are exercised
    m_ref = ref.train_minibatch(batch.with_logprobs(old_logp=old))
    model, lrn = learner(micro_tokens=micro_tokens, chunk=chunk)
    assert torch.allclose(lrn.logprobs(batch), (old - 0.05) * batch.loss_mask, atol=1e-6)  # 0 off the response
    m = lrn.train_minibatch(batch.with_logprobs(old_logp=old))
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-5), name
    for key in ("loss/policy", "loss/entropy", "loss/clip_frac"):
        assert m[key] == pytest.approx(m_ref[key], abs=1e-6), key

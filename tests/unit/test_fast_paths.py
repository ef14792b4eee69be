"""Learner fast paths vs their slow references: length-sorted micro-batches and the skipped on-policy log-prob
pass give the same log-probs, losses and gradients (fp32 tolerance). Run: pytest tests/unit/test_fast_paths.py"""

import pytest
import torch
from batches import random_batch

from two_grpo.config.schema import AlgoConfig, LearnerConfig
from two_grpo.data.batch import Rollout, collate
from two_grpo.learner.micro import micro_batches, padded_tokens
from two_grpo.learner.step import micro_batch_loss
from two_grpo.learner.torch_learner import TorchLearner


def ragged_batch(n=12, seed=0):
    """Rows with very different lengths (prompts 2-4, responses 1-11 tokens), so sorting matters."""
    return random_batch(n, per_group=3, response_len=lambda i: 1 + (i * 7) % 11, seed=seed)


def rows_of_lengths(lengths):
    rollouts = [
        Rollout(group_id=i, prompt_id=i, prompt_token_ids=[5], token_ids=[6] * (n - 1), text="", finish_reason="stop")
        for i, n in enumerate(lengths)
    ]
    return collate(rollouts, pad_id=0)


def test_sorted_micro_batches_cover_every_row_once_and_cut_padding():
    batch = rows_of_lengths([2, 9, 3, 8])
    plain = micro_batches(batch, rows=2, sort_by_length=False)
    fast = micro_batches(batch, rows=2, sort_by_length=True)
    assert sorted(torch.cat([i for i, _ in fast]).tolist()) == [0, 1, 2, 3]
    assert [i.tolist() for i, _ in plain] == [[0, 1], [2, 3]]  # the reference: consecutive rows
    assert [i.tolist() for i, _ in fast] == [[1, 3], [2, 0]]  # lengths (9, 8) then (3, 2)
    # unsorted: chunks (2,9) and (3,8) are trimmed to 9 and 8 -> 2*9 + 2*8 = 34 slots; sorted: 2*9 + 2*3 = 24
    assert padded_tokens(batch, 2, sort_by_length=False) == 34
    assert padded_tokens(batch, 2, sort_by_length=True) == 24
    # one micro-batch: nothing to sort, the rows keep their order
    assert micro_batches(batch, rows=4, sort_by_length=True)[0][0].tolist() == [0, 1, 2, 3]


def learner_for(tiny_model_dir, micro, sort, skip=True):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    cfg = LearnerConfig(
        micro_rollouts=micro, grad_clip=0.0, warmup_steps=0, sort_by_length=sort, skip_onpolicy_logprob=skip
    )
    learner = TorchLearner(model, cfg, 1e-3, AlgoConfig(), temperature=1.0)
    learner.optimizer.step = lambda *a, **k: None  # keep the weights: compare gradients only
    return model, learner


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"])
def test_length_sorted_micro_batches_give_the_unsorted_gradient(tiny_model_dir, agg):
    batch = ragged_batch()
    results = {}
    for sort in (False, True):
        model, learner = learner_for(tiny_model_dir, micro=4, sort=sort)
        learner.algo = AlgoConfig(loss_agg=agg)
        old = learner.logprobs(batch) + 0.05 * batch.loss_mask  # ratios != 1 so clipping paths are exercised
        metrics = learner.train_minibatch(batch.with_logprobs(old_logp=old))
        results[sort] = ({n: p.grad.clone() for n, p in model.named_parameters()}, metrics, old)
    (g_ref, m_ref, old_ref), (g_fast, m_fast, old_fast) = results[False], results[True]
    mask = batch.loss_mask  # positions past a row's end hold pad-token scores in the reference; never used
    assert torch.allclose(old_fast * mask, old_ref * mask, atol=1e-6)  # scattered back to the right rows
    for name in g_ref:
        assert torch.allclose(g_fast[name], g_ref[name], atol=1e-6, rtol=1e-5), name
    assert m_fast["loss/policy"] == pytest.approx(m_ref["loss/policy"], abs=1e-6)
    assert any(g.abs().sum() > 0 for g in g_ref.values())  # the comparison is not vacuous


def test_skipping_the_onpolicy_logprob_pass_gives_the_same_loss_and_gradient(tiny_model_dir):
    batch = ragged_batch()
    model, learner = learner_for(tiny_model_dir, micro=64, sort=True)
    algo = AlgoConfig()
    n_tok, n_seq = batch.n_tokens, float(len(batch))
    grads = []
    for old in (learner.logprobs(batch), None):  # reference: a separate no-grad pass; fast path: detached logp
        model.zero_grad(set_to_none=True)
        micro = batch.with_logprobs(old_logp=old) if old is not None else batch
        loss, metrics = micro_batch_loss(model, micro, algo, 1.0, n_tok, n_seq)
        loss.backward()
        grads.append(({n: p.grad.clone() for n, p in model.named_parameters()}, float(loss), metrics))
    (g_ref, l_ref, m_ref), (g_fast, l_fast, m_fast) = grads
    assert l_fast == pytest.approx(l_ref, abs=1e-6)
    assert float(m_fast["loss/ratio_mean_sum"]) == pytest.approx(float(m_ref["loss/ratio_mean_sum"]), rel=1e-5)
    for name in g_ref:
        assert torch.allclose(g_fast[name], g_ref[name], atol=1e-6, rtol=1e-5), name


@pytest.mark.slow
@pytest.mark.parametrize("skip, passes_per_rollout_batch", [(True, 1), (False, 2)])
def test_trainer_skips_the_old_logprob_pass_only_for_the_first_minibatch(
    tmp_path, tiny_model_dir, compose, monkeypatch, skip, passes_per_rollout_batch
):
    from two_grpo.run import trainer

    calls = []
    original = TorchLearner.logprobs
    monkeypatch.setattr(TorchLearner, "logprobs", lambda self, b: calls.append(len(b)) or original(self, b))
    cfg = compose(
        [
            f"model.path={tiny_model_dir}",
            "prompts_per_rollout=4",
            "prompts_per_minibatch=2",  # U = 2 optimizer steps per rollout batch
            "group_size=2",
            "budget.max_steps=4",
            "eval.prompts=0",
            "logger.progress=false",
            f"learner.skip_onpolicy_logprob={str(skip).lower()}",
        ]
    )
    trainer.train(cfg, tmp_path)
    assert len(calls) == 2 * passes_per_rollout_batch  # 2 rollout batches
    assert all(n == 4 for n in calls)  # M * G rows each

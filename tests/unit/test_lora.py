"""LoRA (two_grpo/models/lora.py) on the tiny model: only the adapter trains, merged weights are base + (alpha/r)·B·A by
hand, the learner's module is never merged, checkpoints hold the adapter and load back exactly."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

from two_grpo.config.schema import AlgoConfig, ConfigError, LearnerConfig, LoraConfig, ModelConfig  # noqa: E402
from two_grpo.data.batch import collate  # noqa: E402
from two_grpo.learner.torch_learner import TorchLearner  # noqa: E402
from two_grpo.models import lora  # noqa: E402
from two_grpo.models.loading import load_model  # noqa: E402
from two_grpo.rollout.base import Sampling  # noqa: E402
from two_grpo.rollout.hf_engine import HFEngine  # noqa: E402

TARGETS = ["q_proj", "v_proj"]


def lora_model(tiny_model_dir, r=4, alpha=8.0, targets=TARGETS):
    base = load_model(str(tiny_model_dir), ModelConfig())
    return lora.apply_lora(base, LoraConfig(r=r, alpha=alpha, target_modules=list(targets)))


def make_learner(model, kl_coef=0.0):
    cfg = LearnerConfig(micro_rollouts=8, warmup_steps=0)
    return TorchLearner(model, cfg, lr=1e-2, algo=AlgoConfig(kl_coef=kl_coef), temperature=1.0)


def rollout_batch(model, tiny_model_dir, seed=0):
    """Four groups of 4 sampled rollouts of the tiny model, with made-up non-zero advantages."""
    from two_grpo.data.batch import Prompt
    from two_grpo.models.loading import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    engine = HFEngine(model, tok, max_prompt_tokens=32)
    prompts = [Prompt(i, f"{i + 3}+{2 * i}=", str(3 * i + 3)) for i in range(4)]
    rollouts = engine.generate(prompts, list(range(4)), Sampling(n=4, temperature=1.0, max_new_tokens=6, seed=seed))
    for k, r in enumerate(rollouts):
        r.advantage = (-1.0) ** k * (1 + k % 3)
    return collate(rollouts, engine.pad_id), engine


def test_r0_is_the_model_itself_and_bad_targets_are_refused(tiny_model_dir):
    base = load_model(str(tiny_model_dir), ModelConfig())
    assert lora.apply_lora(base, LoraConfig(r=0)) is base and not lora.is_lora(base)
    with pytest.raises(ConfigError, match=r"model.lora.target_modules: \['qq_proj'\]"):
        lora.apply_lora(base, LoraConfig(r=2, target_modules=["qq_proj"]))


def test_only_the_adapter_trains_and_the_optimizer_holds_only_it(tiny_model_dir):
    model = lora_model(tiny_model_dir)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 2 * len(TARGETS) * 4  # A and B of q_proj, v_proj in 4 layers
    learner = make_learner(model)
    batch, _ = rollout_batch(model, tiny_model_dir)
    before_b = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_B." in n}
    for _ in range(3):
        out = learner.train_minibatch(batch)
        assert out["optim/skipped"] == 0.0
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], t) for n, t in frozen.items())  # bitwise unchanged
    assert any(not torch.equal(after[n], t) for n, t in before_b.items())  # B left zero: the adapter trained
    state = learner.optimizer.state_dict()
    n_adapter = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(s["exp_avg"].numel() for s in state["state"].values()) == n_adapter
    assert len(state["state"]) == len(trainable)


def test_merged_weights_are_base_plus_scaled_BA_by_hand_and_not_merged_in_place(tiny_model_dir):
    r, alpha = 4, 8.0
    model = lora_model(tiny_model_dir, r=r, alpha=alpha)
    with torch.no_grad():  # a non-zero adapter (peft starts with B = 0)
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.copy_(torch.randn_like(p) * 0.1)
    base = dict(load_model(str(tiny_model_dir), ModelConfig()).named_parameters())
    live = dict(model.named_parameters())
    merged = dict(lora.merged_weights(model))
    assert merged.keys() == base.keys()
    prefix = "base_model.model."
    for name, w in merged.items():
        module = name.rsplit(".", 1)[0]
        if name.endswith("weight") and module.rsplit(".", 1)[-1] in TARGETS:
            a = live[f"{prefix}{module}.lora_A.default.weight"]
            b = live[f"{prefix}{module}.lora_B.default.weight"]
            assert a.shape == (r, base[name].shape[1]) and b.shape == (base[name].shape[0], r)
            expected = base[name] + (alpha / r) * (b @ a)
            assert torch.allclose(w, expected, atol=1e-6), name
            assert not torch.allclose(w, base[name])
            assert torch.equal(live[f"{prefix}{module}.base_layer.weight"], base[name])  # the learner's copy
        else:
            assert torch.equal(w, base[name]), name
    # the merged tensors give the adapted model's logits in a plain (unadapted) copy of the base model
    plain = load_model(str(tiny_model_dir), ModelConfig())
    plain.load_state_dict(merged, strict=False)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)


def test_engine_push_of_merged_weights_into_an_engine_copy(tiny_model_dir):
    """An engine holding its own copy (the vLLM case) receives base + BA under the base names and then samples
    what the adapted learner samples."""
    model = lora_model(tiny_model_dir)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.copy_(torch.randn_like(p) * 0.2)
    learner = make_learner(model)
    copy = load_model(str(tiny_model_dir), ModelConfig())
    from two_grpo.models.loading import load_tokenizer

    engine = HFEngine(copy, load_tokenizer(str(tiny_model_dir)), max_prompt_tokens=32)
    engine.load_weights(learner.named_weights())
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.allclose(copy(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)


def test_checkpoint_holds_the_adapter_only_and_loads_back_exactly(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    model = lora_model(tiny_model_dir)
    learner = make_learner(model)
    batch, _ = rollout_batch(model, tiny_model_dir)
    learner.train_minibatch(batch)
    learner.save_state(tmp_path)
    saved = load_file(str(tmp_path / lora.ADAPTER_FILE))
    assert not (tmp_path / "model.safetensors").exists()
    assert saved.keys() == {n for n, p in model.named_parameters() if p.requires_grad}
    after_one = learner.train_minibatch(batch)  # the reference second step
    reference = lora.adapter_state(model)

    fresh = make_learner(lora_model(tiny_model_dir))
    fresh.load_state(tmp_path)
    again = fresh.train_minibatch(batch)
    assert again["loss/policy"] == after_one["loss/policy"]
    assert all(torch.equal(reference[n], t) for n, t in lora.adapter_state(fresh.model).items())


def test_kl_reference_is_the_base_model_with_the_adapter_off(tiny_model_dir):
    model = lora_model(tiny_model_dir)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.copy_(torch.randn_like(p) * 0.2)
    learner = make_learner(model, kl_coef=0.1)
    batch, _ = rollout_batch(model, tiny_model_dir)
    plain = make_learner(load_model(str(tiny_model_dir), ModelConfig()))
    assert torch.allclose(learner.ref_logprobs(batch), plain.logprobs(batch), atol=1e-5)
    assert not torch.allclose(learner.logprobs(batch), plain.logprobs(batch), atol=1e-3)
    assert model.training  # the reference pass leaves the module in train mode


def test_lora_with_deepspeed_is_refused_in_one_line(compose):
    with pytest.raises(ConfigError, match="LoRA with DeepSpeed is not supported"):
        compose(["learner=zero2", "model.lora.r=8"])
    with pytest.raises(ConfigError, match="model.lora"):
        compose(["model.lora.r=8", "model.lora.dropout=1.5"])
    assert compose(["model.lora.r=8", "model.lora.target_modules=[all-linear]"]).model.lora.r == 8


def test_lora_training_moves_the_policy_toward_positive_advantages(tiny_model_dir):
    """What an update must do: after a few adapter-only steps on one batch, the mean log-prob of the completions
    with positive advantage rises relative to those with negative advantage (the policy-gradient direction)."""
    model = lora_model(tiny_model_dir, r=8, alpha=16.0)
    learner = make_learner(model)
    batch, _ = rollout_batch(model, tiny_model_dir)

    def gap() -> float:
        logp = (learner.logprobs(batch) * batch.loss_mask).sum(1) / batch.loss_mask.sum(1)
        return float(logp[batch.adv > 0].mean() - logp[batch.adv < 0].mean())

    before = gap()
    for _ in range(5):
        learner.train_minibatch(batch)
    assert gap() > before + 0.05, (before, gap())

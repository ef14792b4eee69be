"""Typed config schemas, the allowed values of every choice key, derived sizes and validation.

Hydra composes `conf/train.yaml` on top of `TrainConfig` (registered as `train_schema`), so a misspelt key
or a wrong type fails at compose time. `validate()` then checks choice keys and combinations with one-line,
fix-it messages. Derived sizes (`Derived`) are computed here and nowhere else.

Dimension letters (see `batch.py`): P prompts per rollout batch, G group size, M prompts per mini-batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from two_grpo.config.errors import ConfigError  # noqa: F401  (re-exported: `from two_grpo.config.schema import ConfigError`)


@dataclass
class LoraConfig:
    """LoRA adapters through peft (two_grpo/models/lora.py, the `lora` extra): only the adapter trains."""

    r: int = 0  # adapter rank; 0 = off (full fine-tuning)
    alpha: float = 16.0  # scale: the update is (alpha / r) * B @ A
    dropout: float = 0.0  # dropout on the adapter's input (training only)
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )  # or [all-linear]


@dataclass
class ModelConfig:
    path: str = "builtin:tiny"  # HF id, local folder, or builtin:tiny (built locally on first use)
    dtype: str = "float32"  # float32 | bfloat16 | float16
    trust_remote_code: bool = False  # run Python code shipped with the model (HF trust_remote_code)
    tiny_cache_dir: str = ""  # where builtin:tiny is built; "" -> $TWO_GRPO_CACHE or ~/.cache/two_grpo
    allow_pickle: bool = False  # load *.bin/*.pt (pickle) weights; off = safetensors only
    max_position_embeddings: int = 0  # >0: written into the loaded config (learner and vLLM); 0 = the model's own
    rope_theta: float = 0.0  # >0: RoPE base written into the loaded config (raise it with the positions)
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class ArithConfig:
    """The built-in arithmetic task (tasks/toy_arith.py)."""

    min_digits: int = 1  # operand lengths in digits, drawn uniformly per operand (carries/borrows vary)
    max_digits: int = 0  # 0 = draw operands from min_operand..max_operand instead
    min_operand: int = 0  # range mode only (max_digits=0)
    max_operand: int = 99  # range mode only (max_digits=0)
    operators: str = "+-"  # any of "+-*"
    mul_max_digits: int = 1  # the second factor of `*` has at most this many digits
    chain_frac: float = 0.0  # share of +/- problems with a third term (`a+b-c`)
    train_prompts: int = 20000
    eval_prompts: int = 256
    ood_eval_prompts: int = 128  # out-of-distribution split `<task>_ood`; 0 = off
    ood_extra_digits: int = 1  # its operands have this many more digits than training
    partial_credit: bool = False  # reward = fraction of answer characters right (continuous reward)


@dataclass
class DataConfig:
    """A MATH / DAPO / GSM8K-style dataset for the `math` task (tasks/math.py)."""

    path: str = ""  # HF dataset name, a .parquet file or a .jsonl file
    split: str = "train"
    eval_path: str = ""
    eval_split: str = "test"
    prompt_field: str = "problem"
    answer_field: str = "answer"
    answer_from_boxed: bool = False  # take the gold answer from the last \boxed{} of answer_field
    template: str = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
    use_chat_template: bool = True
    max_prompts: int = 0  # 0 = all
    overlap: str = "report"  # train/eval 8-gram overlap (data_gate.py): report | drop (the rows) | refuse (to start)
    eval_frac: float = 0.0  # > 0 (and no eval_path): hold out this seeded share of `path` for eval, not trained on


@dataclass
class RGConfig:
    """A reasoning-gym generator (tasks/reasoning_gym_task.py; `pip install -e ".[reasoning-gym]"`)."""

    dataset: str = "chain_sum"  # any reasoning_gym.create_dataset name, e.g. basic_arithmetic, chain_sum
    config: dict[str, Any] = field(default_factory=dict)  # the generator's own config, e.g. {max_terms: 3}
    seed: int = 0  # the generator's seed (train split; eval and the warm start use seeds ~1e7 and ~2e7 above it)
    train_size: int = 5000
    eval_size: int = 256
    template: str = "{question}\nA: "  # prompt text; {question} is the generator's question


@dataclass
class TaskConfig:
    name: str = (
        "toy_arith"  # toy_arith | math | reasoning_gym | a task installed under the `two_grpo.tasks` entry-point group
    )
    module: str = ""  # "pkg.module:TaskClass": your own task class, TaskClass(task_cfg, tokenizer) (tasks/plugins.py)
    options: dict[str, Any] = field(default_factory=dict)  # free-form settings for a plug-in task
    arith: ArithConfig = field(default_factory=ArithConfig)
    rg: RGConfig = field(default_factory=RGConfig)
    data: DataConfig = field(default_factory=DataConfig)
    reward_timeout_s: float = 2.0  # hard deadline per scored completion (worker process is killed)
    reward_workers: int = 2
    max_failed_reward_frac: float = 0.1  # stop the run when more of a batch's rewards time out or error
    # plug-in rewards (rewards.py): "path/to/file.py:function", called fn(completion, answer, **row_fields) -> float
    reward_fn: str = ""  # one function that replaces the task's own reward
    reward_fns: list[str] = field(default_factory=list)  # several, summed with reward_weights; "task" = the task's own
    reward_weights: list[float] = field(default_factory=list)  # one per reward_fns entry; [] = all 1.0


@dataclass
class RolloutConfig:
    backend: str = "auto"  # auto (vllm when importable, else hf) | vllm | hf (transformers generate, the fallback)
    temperature: float = 1.0  # sampling temperature of training rollouts (> 0)
    top_p: float = 1.0  # nucleus sampling; 1 = off
    top_k: int = 0  # 0 = off
    max_response_tokens: int = 12  # tokens generated per rollout at most (longer ones are cut: finish_reason length)
    max_prompt_tokens: int = 0  # prompts keep their last N tokens; 0 = auto: model positions - longest response
    gen_rollouts_per_call: int = 512  # HF engine: generate at most this many rollouts per generate() call
    # vLLM engine (rollout/vllm_engine.py); see the README's "Rollouts on vLLM"
    dtype: str = "auto"  # auto (= model.dtype) | float32 | bfloat16 | float16: the engine's weights
    kv_cache_gb: float = (
        -1.0
    )  # KV cache size; -1 = auto (0.25 on CPU, from gpu_memory_utilization on CUDA); 0 = profile
    gpu_memory_utilization: float = 0.3  # share of the GPU vLLM may take (the learner shares the card)
    max_num_seqs: int = (
        0  # sequences decoded together; 0 = this engine's share of a rollout batch (P*G*TP/world, >= 256)
    )
    max_num_batched_tokens: int = 8192  # tokens per engine step (prefill chunking)
    enforce_eager: bool = True  # False = torch.compile / CUDA graphs (long start-up, faster steps on GPU)
    enable_sleep: bool = False  # GPU: free KV cache + offload weights while the learner runs
    sleep_level: int = 1  # 1 = offload weights to host, drop KV cache (the only level allowed: 2 drops the weights)
    tensor_parallel_size: int = 1  # >1: run under torchrun; each rank hosts its shard (external launcher)
    cache_dir: str = ""  # vLLM + inductor caches; "" -> <project cache>/vllm ($TWO_GRPO_CACHE or ~/.cache/two_grpo)
    # HF engine (README: Performance): fused = lean + fused decode steps for plain Qwen2/Llama (else lean's);
    # lean = our loop over the HF module's KV cache (rollout/lean_sampler.py; generate's tokens at a seed, plus the
    # sampling log-probs); generate = transformers generate
    hf_sampler: str = "fused"


@dataclass
class LearnerConfig:
    backend: str = "torch"  # torch (single process AdamW) | deepspeed (ZeRO, any number of ranks)
    micro_rollouts: int = 64  # rollouts per forward/backward; gradient is accumulated over a mini-batch
    micro_tokens: int = 0  # also cap a micro-batch at this many padded token slots (rows x length); 0 = off
    logits_chunk_tokens: int = 1024  # response tokens per output-head chunk; 0 = one chunk, -1 = legacy full logits
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    warmup_steps: int = 10  # linear warm-up over optimizer steps, then constant lr
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    threads: int = 0  # torch CPU threads; 0 = torch default
    max_consecutive_skips: int = 5  # stop after this many non-finite (skipped) updates in a row; 0 = never
    gradient_checkpointing: bool = False  # recompute activations in backward (less memory, ~30% more compute)
    zero_stage: int = 0  # DeepSpeed ZeRO stage (backend=deepspeed): 1, 2 or 3
    offload_optimizer: bool = False  # DeepSpeed: optimizer state and step on the CPU (DeepSpeedCPUAdam)
    offload_params: bool = False  # DeepSpeed ZeRO-3: parameters live on the CPU between uses
    zero3_persistence_threshold: int = 100_000  # ZeRO-3: parameters with fewer elements stay unpartitioned
    sort_by_length: bool = True  # micro-batches of rows with similar lengths (less padding); same gradient
    skip_onpolicy_logprob: bool = True  # no old-logprob pass for a rollout batch's first (on-policy) mini-batch
    # issue 17 (torch learner): padding-free micro-batches, a compiled forward/backward, the AdamW kernel
    padding_free: bool = False  # pack a micro-batch's rows end to end (position_ids restart per row); same gradient
    pack_tokens: int = 0  # padding_free: at most this many tokens per packed sequence; 0 = all rows in one (compile=full: the fixed  # width; 0 = COMPILED_PACK_TOKENS)
    shared_prefix: bool = False  # with padding_free: a group's rows share one copy of their prompt; same gradient
    segment_attention: bool = True  # with padding_free: attend by rows, not over each packed sequence's square
    compile: str = "false"  # false | layers (each decoder layer; true = layers) | full (micro-batch loss as one graph)
    compile_pad_multiple: int = 8  # compile: pad a micro-batch's length up to a multiple of this (fewer shapes)
    adamw_impl: str = "default"  # default (fused on CPU and CUDA, as HF Trainer) | for_loop | foreach | fused


@dataclass
class AlgoConfig:
    advantage: str = "grpo"  # grpo | dr_grpo | batch_std | sign | rloo
    adv_std: str = "population"  # population | sample  (grpo only)
    adv_eps: float = 1e-6
    batch_std_of: str = "centered"  # batch_std only: rewards (TRL scale_rewards="batch") | centered (r - mean_g)
    drop_zero_var_groups: bool = False  # leave groups whose rewards are all equal out of the loss
    clip: bool = True  # PPO-style ratio clipping
    clip_low: float = 0.2  # PPO ratio clip below: 1 - clip_low
    clip_high: float = 0.28  # PPO ratio clip above: 1 + clip_high (clip-higher, DAPO)
    loss_agg: str = "token_mean"  # token_mean | seq_mean_token_mean | seq_mean_token_sum
    kl_coef: float = 0.0  # weight of the KL(policy || initial policy) term in the loss; 0 = off (no reference model)
    kl_estimator: str = "k3"  # k1 | k3
    entropy_coef: float = 0.0  # weight of the entropy bonus; 0 = off
    # rollout engines that report sampling log-probs (vllm): which log-probs are the behaviour policy
    old_logp_source: str = "learner"  # learner (recomputed) | engine (the sampler's own log-probs in the ratio)
    tis_cap: float = 0.0  # > 0: weight token losses by min(pi_learner_old / pi_engine, tis_cap) (truncated IS)
    loss: str = "grpo"  # grpo (clipped surrogate, algo/losses.py) | pairwise (the DPO form at G=2, algo/pairwise.py)
    pairwise_beta: float = 0.1  # algo.loss=pairwise: temperature of the log-ratio margin (no effect on-policy)
    resample_zero_var: bool = False  # replace zero-variance groups by groups of fresh prompts (DAPO / 2-GRPO+RS)
    resample_max_rollouts: int = 0  # cap of extra rollouts per rollout batch (every one is budgeted); 0 = P*G


@dataclass
class DiagnosticsConfig:
    """Optional measurements of the update itself (off by default: each has a cost, stated per key)."""

    # per optimizer step: K disjoint sets of whole groups, each set's gradient sketched to `grad_noise_dims`
    # floats (algo/grad_noise.py); logs grad_noise/{b_simple,snr,trace_cov,grad_sq,set_cos_mean,tokens_per_rollout}.
    # Cost: K sketches of the full gradient per step (O(parameters) each) and micro-batches that no longer mix sets.
    grad_noise: bool = False
    grad_noise_sets: int = 4  # K; 1 = nothing measured (training is bitwise unchanged)
    grad_noise_dims: int = 4096
    grad_noise_seed: int = 0
    # every N optimizer steps (0 = off): the cosine between the step's gradient and a reference gradient of
    # `grad_noise_ref_prompts` x G fresh rollouts (0 = 4 x prompts_per_minibatch) at the same weights, sketched
    # alike: grad_noise/ref_cos (two_grpo/run/noise_reference.py). Cost: those rollouts and one backward pass over
    # them per reference; they are logged (grad_noise/ref_rollouts, ref_s), not counted in budget/*.
    grad_noise_ref_every: int = 0
    grad_noise_ref_prompts: int = 0


@dataclass
class BudgetConfig:
    """A run stops at the first limit reached; 0 = no limit from that key."""

    max_steps: int = 0  # optimizer steps
    max_epochs: float = 0.0  # passes over the training prompts
    max_rollouts: int = 0  # generated rollouts (sequences)
    max_tokens: int = 0  # generated response tokens
    max_wallclock_s: float = 0.0  # seconds of wall-clock time, resumed runs included


@dataclass
class BenchmarkConfig:
    """One eval benchmark read like the `math` task: a HF dataset name, a .jsonl or a .parquet file + fields."""

    path: str = ""
    split: str = "test"
    prompt_field: str = "problem"
    answer_field: str = "answer"  # a list value (OlympiadBench's final_answer) uses its first element
    answer_from_boxed: bool = False
    max_prompts: int = 0  # 0 = all


@dataclass
class EvalConfig:
    prompts: int = 256  # held-out prompts; 0 = no eval
    samples_per_prompt: int = 1  # k for mean@k / pass@k
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0
    every_steps: int = 0  # 0 = only at start and end
    every_rollouts: int = 0  # also eval each time the rollouts total crosses a multiple of this (equal budgets)
    difficulty_prompts: int = (
        0  # difficulty profile on this many training prompts at start (and end); 0 = off (also when eval.prompts=0)
    )
    difficulty_samples: int = 8  # k samples per prompt of the profile, at rollout.temperature
    difficulty_at_end: bool = True  # also profile the same prompts after training (difficulty_end.json)
    max_response_tokens: int = 0  # 0 = rollout.max_response_tokens (the paper evaluates at 4096)
    benchmarks: dict[str, BenchmarkConfig] = field(default_factory=dict)  # name -> benchmark (conf/eval/math_suite)


@dataclass
class LoggerConfig:
    backend: str = "jsonl"  # jsonl | wandb (wandb also writes metrics.jsonl)
    project: str = "two-grpo"
    dump_rollouts_every: int = 10  # optimizer steps (rollouts/step_N.jsonl, and wandb's completions table); 0 = never
    progress: bool = True
    print_every: int = 10  # non-interactive terminals: print one line every N steps
    entity: str = ""  # wandb entity (team or user); "" = your default
    group: str = ""  # wandb group; "" = the sweep's name when run by a sweep, else none
    tags: list[str] = field(default_factory=list)  # wandb tags; [] = the sweep member's name when run by a sweep
    verbose: bool = (
        False  # true: the rollout engine's (vLLM's) INFO/WARNING lines on the console, not only in engine.log
    )


@dataclass
class CheckpointConfig:
    """Checkpoints in <run_dir>/checkpoints/step_N (checkpoint.py), taken at rollout-batch boundaries."""

    every_steps: int = 50  # optimizer steps between checkpoints; 0 = only at the end and on preemption
    keep_last: int = 2  # completed checkpoints kept; 0 = keep all


@dataclass
class PlanConfig:
    """The per-GPU memory plan (two_grpo/run/memory_plan.py), printed by `train ... --plan` and in a CUDA run's header."""

    gpus: int = 0  # ranks to plan for; 0 = WORLD_SIZE from the launcher (1 without one)
    device_memory_gb: float = 0.0  # memory of one GPU; 0 = the CUDA device's own, else 80
    enforce: bool = True  # on CUDA, refuse a run whose plan exceeds the device's memory


@dataclass
class GuardsConfig:
    """Run guards that watch the rollouts (guards.py); the learner's own is learner.max_consecutive_skips."""

    zero_signal_warn_batches: int = 5  # warn once after this many rollout batches in a row with no signal; 0 = off
    zero_signal_stop_batches: int = 50  # stop (exit 4) after this many in a row; 0 = never


@dataclass
class TrainConfig:
    group_size: int = 8  # G: rollouts per prompt
    lr: float = 5e-5
    prompts_per_rollout: int = 32  # P: prompts per rollout (generation) batch
    prompts_per_minibatch: int = 32  # M: prompts per optimizer mini-batch
    seed: int = 0  # run seed: prompt order, sampling seeds, init of anything random
    run_id: str = ""  # "" -> <experiment>-<time>-<random>
    experiment_name: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    guards: GuardsConfig = field(default_factory=GuardsConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    resume: str = ""  # a run dir to resume (its saved config is used); auto = the newest unfinished run with this
    # config under the run root (runs/); "" = start, or resume hydra.run.dir


CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("float32", "bfloat16", "float16"),
    "task.name": (
        "toy_arith",
        "math",
        "reasoning_gym",
    ),  # plus installed `two_grpo.tasks` entry points (validate_plugins)
    "rollout.backend": ("auto", "hf", "vllm"),
    "rollout.dtype": ("auto", "float32", "bfloat16", "float16"),
    "rollout.hf_sampler": ("fused", "lean", "generate"),
    "learner.backend": ("torch", "deepspeed"),
    "learner.adamw_impl": ("default", "for_loop", "foreach", "fused"),
    "learner.compile": ("false", "layers", "full", "true"),  # true = layers (as before); bools accepted
    "algo.advantage": ("grpo", "dr_grpo", "batch_std", "sign", "rloo"),
    "algo.adv_std": ("population", "sample"),
    "algo.batch_std_of": ("rewards", "centered"),
    "algo.loss_agg": ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum"),
    "algo.kl_estimator": ("k1", "k3"),
    "algo.old_logp_source": ("learner", "engine"),
    "algo.loss": ("grpo", "pairwise"),
    "logger.backend": ("jsonl", "wandb"),
    "task.data.overlap": ("report", "drop", "refuse"),
}


def reject_instantiation_keys(node: Any, prefix: str = "") -> None:
    """Config values are data, never code: a `_target_` (or any `_name_`) key anywhere is refused."""
    for key in node.keys() if hasattr(node, "keys") else []:
        full = f"{prefix}{key}"
        if isinstance(key, str) and key.startswith("_") and key.endswith("_"):
            raise ConfigError(f"config key {full!r}: object instantiation from config is not supported; remove it")
        reject_instantiation_keys(node[key] if not hasattr(node, "_get_node") else node._get_node(key), full + ".")


def register_schemas() -> None:
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


@dataclass(frozen=True)
class Derived:
    """Sizes computed from the config; printed at start and saved with the run."""

    rollouts_per_minibatch: int  # M * G
    rollouts_per_rollout_batch: int  # P * G
    updates_per_rollout_batch: int  # P / M optimizer steps per rollout batch
    train_prompts: int  # size of the training prompt set
    rollout_batches_per_epoch: float
    total_steps: int  # optimizer steps the budget allows (wall-clock aside); -1 if unbounded

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def derive(cfg: TrainConfig, train_prompts: int) -> Derived:
    """Derived sizes; `train_prompts` is the number of training prompts the task provides."""
    p, g, m = cfg.prompts_per_rollout, cfg.group_size, cfg.prompts_per_minibatch
    updates = p // m
    b = cfg.budget
    limits: list[int] = []
    if b.max_steps > 0:
        limits.append(b.max_steps)
    if b.max_epochs > 0 and train_prompts > 0:
        limits.append(math.ceil(b.max_epochs * train_prompts / p) * updates)
    if b.max_rollouts > 0:
        # the trainer stops after the rollout batch that reaches the limit
        limits.append(math.ceil(b.max_rollouts / (p * g)) * updates)
    return Derived(
        rollouts_per_minibatch=m * g,
        rollouts_per_rollout_batch=p * g,
        updates_per_rollout_batch=updates,
        train_prompts=train_prompts,
        rollout_batches_per_epoch=train_prompts / p if train_prompts else 0.0,
        total_steps=min(limits) if limits else -1,
    )


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError (one line, names the key and the fix) on the first problem found."""
    for key, allowed in CHOICES.items():
        if key == "task.name":  # plug-in tasks too: checked in validate_plugins
            continue
        value = _get(cfg, key)
        if key == "learner.compile":  # a bool (learner.compile=true from the command line) reads as 'True'
            value = str(value).lower()
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")
    positive = {
        "group_size": cfg.group_size,
        "prompts_per_rollout": cfg.prompts_per_rollout,
        "prompts_per_minibatch": cfg.prompts_per_minibatch,
        "learner.micro_rollouts": cfg.learner.micro_rollouts,
        "rollout.max_response_tokens": cfg.rollout.max_response_tokens,
        "task.reward_workers": cfg.task.reward_workers,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}={value} must be >= 1")
    if cfg.group_size < 2:
        raise ConfigError(f"group_size={cfg.group_size} must be >= 2: a group of one has no baseline to compare to")
    if cfg.prompts_per_rollout % cfg.prompts_per_minibatch:
        raise ConfigError(
            f"prompts_per_rollout={cfg.prompts_per_rollout} must be divisible by prompts_per_minibatch="
            f"{cfg.prompts_per_minibatch}; set prompts_per_rollout to a multiple of it"
        )
    if not cfg.lr > 0:
        raise ConfigError(f"lr={cfg.lr} must be > 0")
    if cfg.algo.clip and not (0 <= cfg.algo.clip_low < 1 and cfg.algo.clip_high >= 0):
        raise ConfigError(
            f"algo.clip_low={cfg.algo.clip_low} / algo.clip_high={cfg.algo.clip_high}: need 0 <= clip_low < 1 and clip_high >= 0"
        )
    if cfg.algo.kl_coef < 0:
        raise ConfigError(f"algo.kl_coef={cfg.algo.kl_coef} must be >= 0")
    if not (0 < cfg.rollout.top_p <= 1):
        raise ConfigError(f"rollout.top_p={cfg.rollout.top_p} must be in (0, 1]")
    if cfg.rollout.temperature <= 0:
        raise ConfigError(f"rollout.temperature={cfg.rollout.temperature} must be > 0 for training rollouts")
    b = cfg.budget
    if not any(v > 0 for v in (b.max_steps, b.max_epochs, b.max_rollouts, b.max_tokens, b.max_wallclock_s)):
        raise ConfigError(
            "budget: no stopping limit is set; set one of budget.max_steps, budget.max_epochs, "
            "budget.max_rollouts, budget.max_tokens, budget.max_wallclock_s (or pick budget=steps|epochs|rollouts)"
        )
    if cfg.task.name == "math" and cfg.task.data.path in ("", "???"):
        raise ConfigError("task.data.path is empty; set it to a HF dataset name, a .parquet or a .jsonl file")
    arith = cfg.task.arith
    if cfg.task.name == "toy_arith":
        if arith.max_operand < arith.min_operand:
            raise ConfigError(f"task.arith.max_operand={arith.max_operand} must be >= task.arith.min_operand")
        if arith.max_digits and not 1 <= arith.min_digits <= arith.max_digits <= 6:
            raise ConfigError(
                f"task.arith.min_digits={arith.min_digits} / max_digits={arith.max_digits}: need "
                "1 <= min_digits <= max_digits <= 6 (or max_digits=0 for the min_operand..max_operand range)"
            )
        if not 0 <= arith.chain_frac <= 1 or arith.mul_max_digits < 1 or arith.ood_extra_digits < 0:
            raise ConfigError(
                f"task.arith: need 0 <= chain_frac <= 1, mul_max_digits >= 1, ood_extra_digits >= 0 (got "
                f"{arith.chain_frac}, {arith.mul_max_digits}, {arith.ood_extra_digits})"
            )
        bad = set(arith.operators) - set("+-*")
        if bad or not arith.operators:
            raise ConfigError(f"task.arith.operators={arith.operators!r}: use one or more of '+', '-', '*'")
    if cfg.checkpoint.every_steps < 0 or cfg.checkpoint.keep_last < 0:
        raise ConfigError(
            "checkpoint.every_steps and checkpoint.keep_last must be >= 0 (0 = at the end only / keep all)"
        )
    if not 0 <= cfg.task.max_failed_reward_frac <= 1:
        raise ConfigError(f"task.max_failed_reward_frac={cfg.task.max_failed_reward_frac} must be in [0, 1]")
    lc = cfg.learner
    if lc.backend == "deepspeed" and lc.zero_stage not in (1, 2, 3):
        raise ConfigError(f"learner.zero_stage={lc.zero_stage} must be 1, 2 or 3 with learner.backend=deepspeed")
    if lc.offload_params and not (lc.backend == "deepspeed" and lc.zero_stage == 3):
        raise ConfigError("learner.offload_params=true needs learner=zero3 (ZeRO-3 partitions parameters)")
    if cfg.algo.tis_cap < 0:
        raise ConfigError(f"algo.tis_cap={cfg.algo.tis_cap} must be >= 0 (0 = off; 2 is a common cap)")
    r = cfg.rollout
    if r.max_prompt_tokens < 0:
        raise ConfigError(
            f"rollout.max_prompt_tokens={r.max_prompt_tokens} must be >= 0 (0 = what the positions allow)"
        )
    bad_kv = r.kv_cache_gb < 0 and r.kv_cache_gb != -1
    if r.tensor_parallel_size < 1 or not (0 < r.gpu_memory_utilization <= 1) or bad_kv or r.max_num_seqs < 0:
        raise ConfigError(
            "rollout: need tensor_parallel_size >= 1, 0 < gpu_memory_utilization <= 1, kv_cache_gb >= 0 or -1 (auto), "
            f"max_num_seqs >= 0 (got {r.tensor_parallel_size}, {r.gpu_memory_utilization}, {r.kv_cache_gb}, "
            f"{r.max_num_seqs})"
        )
    if cfg.eval.samples_per_prompt < 1:
        raise ConfigError(f"eval.samples_per_prompt={cfg.eval.samples_per_prompt} must be >= 1")
    if lc.micro_tokens < 0 or lc.logits_chunk_tokens < -1:
        raise ConfigError(
            f"learner.micro_tokens={lc.micro_tokens} must be >= 0 (0 = off) and learner.logits_chunk_tokens="
            f"{lc.logits_chunk_tokens} >= -1 (0 = one chunk, -1 = legacy full logits)"
        )
    if cfg.plan.gpus < 0 or cfg.plan.device_memory_gb < 0:
        raise ConfigError(
            f"plan.gpus={cfg.plan.gpus} and plan.device_memory_gb={cfg.plan.device_memory_gb} must be >= 0 (0 = auto)"
        )
    if r.sleep_level != 1:
        raise ConfigError(
            f"rollout.sleep_level={r.sleep_level}: only level 1 is supported (level 2 discards the weights, and the "
            "engine would serve garbage after waking); set rollout.sleep_level=1"
        )
    m = cfg.model
    if m.max_position_embeddings < 0 or m.rope_theta < 0:
        raise ConfigError("model.max_position_embeddings and model.rope_theta must be >= 0 (0 = the model's own)")
    if cfg.eval.every_rollouts < 0 or cfg.eval.every_steps < 0:
        raise ConfigError(
            f"eval.every_steps={cfg.eval.every_steps} and eval.every_rollouts={cfg.eval.every_rollouts} must be "
            ">= 0 (0 = off)"
        )
    lora = cfg.model.lora
    if lora.r < 0 or lora.alpha <= 0 or not 0 <= lora.dropout < 1 or (lora.r > 0 and not lora.target_modules):
        raise ConfigError(
            f"model.lora: need r >= 0 (0 = off), alpha > 0, 0 <= dropout < 1 and target_modules set "
            f"(got r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, target_modules={list(lora.target_modules)})"
        )
    if lora.r > 0 and cfg.learner.backend != "torch":
        raise ConfigError(
            "model.lora.r > 0 needs learner.backend=torch (learner=cpu); LoRA with DeepSpeed is not supported"
        )
    if cfg.eval.difficulty_prompts < 0 or cfg.eval.difficulty_samples < 1:
        raise ConfigError(
            f"eval.difficulty_prompts={cfg.eval.difficulty_prompts} must be >= 0 (0 = off) and "
            f"eval.difficulty_samples={cfg.eval.difficulty_samples} >= 1"
        )
    fast = (
        ["padding_free"] * lc.padding_free
        + ["compile"] * (compile_mode(lc.compile) != "false")
        + (["adamw_impl"] * (lc.adamw_impl != "default"))
    )
    if fast and lc.backend != "torch":
        raise ConfigError(f"learner.{fast[0]} needs learner.backend=torch (learner=torch); unset it for DeepSpeed")
    if lc.pack_tokens < 0 or lc.compile_pad_multiple < 1:
        raise ConfigError(
            f"learner.pack_tokens={lc.pack_tokens} must be >= 0 (0 = one packed sequence) and "
            f"learner.compile_pad_multiple={lc.compile_pad_multiple} >= 1"
        )
    validate_plugins(cfg)
    validate_loss_and_diagnostics(cfg)


def compile_mode(value: Any) -> str:
    """learner.compile as one of false | layers | full (true, True and a bool True mean layers)."""
    mode = str(value).lower()
    return {"true": "layers", "0": "false", "1": "layers"}.get(mode, mode)


def shares_prompts(learner: Any) -> bool:
    """Whether the learner runs each group's prompt once: learner.shared_prefix over packed rows (padding_free),
    torch backend only (the DeepSpeed learner keeps padded rows)."""
    return learner.backend == "torch" and bool(learner.padding_free and learner.shared_prefix)


BUILTIN_TASKS = CHOICES["task.name"]


def validate_plugins(cfg: TrainConfig) -> None:
    """Task name or module, plug-in reward keys, eval_frac and the zero-signal guard (issue 16)."""
    t = cfg.task
    if not t.module and t.name not in BUILTIN_TASKS:
        from two_grpo.tasks.plugins import installed_tasks

        installed = installed_tasks()
        if t.name not in installed:
            raise ConfigError(
                f"task.name={t.name!r} is not allowed; choose one of: {', '.join([*BUILTIN_TASKS, *installed])} "
                "(or set task.module=pkg.module:TaskClass)"
            )
    if t.module and ":" not in t.module:
        raise ConfigError(f"task.module={t.module!r}: write it as pkg.module:TaskClass")
    if t.reward_fn and t.reward_fns:
        raise ConfigError(
            "task.reward_fn and task.reward_fns are both set; use reward_fn for one, reward_fns for several"
        )
    for spec in [t.reward_fn] * bool(t.reward_fn) + [s for s in t.reward_fns if s != "task"]:
        if ":" not in spec or not spec.rsplit(":", 1)[0].endswith(".py"):
            raise ConfigError(f"task reward {spec!r}: write it as path/to/file.py:function_name")
    if t.reward_weights and len(t.reward_weights) != len(t.reward_fns):
        raise ConfigError(
            f"task.reward_weights has {len(t.reward_weights)} entries for {len(t.reward_fns)} task.reward_fns; "
            "give one weight per function (or none: all 1.0)"
        )
    d = t.data
    if not 0 <= d.eval_frac < 1:
        raise ConfigError(f"task.data.eval_frac={d.eval_frac} must be in [0, 1) (0.05 holds out 5% for eval)")
    if d.eval_frac > 0 and d.eval_path:
        raise ConfigError(
            f"task.data.eval_frac={d.eval_frac} and task.data.eval_path={d.eval_path!r} are both set; choose one"
        )
    g = cfg.guards
    if g.zero_signal_warn_batches < 0 or g.zero_signal_stop_batches < 0:
        raise ConfigError("guards.zero_signal_warn_batches / guards.zero_signal_stop_batches must be >= 0 (0 = off)")


def validate_loss_and_diagnostics(cfg: TrainConfig) -> None:
    """algo.loss=pairwise and diagnostics.* combinations (issue: test the paper's argument)."""
    a, d = cfg.algo, cfg.diagnostics
    if a.loss == "pairwise":
        if cfg.group_size != 2:
            raise ConfigError(
                f"algo.loss=pairwise compares the two rollouts of a pair: set group_size=2 (got {cfg.group_size})"
            )
        if a.pairwise_beta <= 0:
            raise ConfigError(f"algo.pairwise_beta={a.pairwise_beta} must be > 0")
        if a.kl_coef > 0:
            raise ConfigError("algo.loss=pairwise has its reference built in (the sampling policy): set algo.kl_coef=0")
        if cfg.learner.micro_rollouts % 2:
            raise ConfigError(
                f"learner.micro_rollouts={cfg.learner.micro_rollouts} must be even with algo.loss=pairwise (whole pairs)"
            )
    if a.resample_max_rollouts < 0:
        raise ConfigError(f"algo.resample_max_rollouts={a.resample_max_rollouts} must be >= 0 (0 = P*G)")
    if d.grad_noise:
        if d.grad_noise_sets < 1 or d.grad_noise_dims < 1:
            raise ConfigError("diagnostics.grad_noise_sets and diagnostics.grad_noise_dims must be >= 1")
        if cfg.learner.backend != "torch":
            raise ConfigError("diagnostics.grad_noise=true is measured by learner=torch only; set it to false")
        if d.grad_noise_sets > cfg.prompts_per_minibatch:
            raise ConfigError(
                f"diagnostics.grad_noise_sets={d.grad_noise_sets} exceeds prompts_per_minibatch="
                f"{cfg.prompts_per_minibatch}: each set needs at least one whole group"
            )
    if d.grad_noise_ref_every < 0 or d.grad_noise_ref_prompts < 0:
        raise ConfigError("diagnostics.grad_noise_ref_every and diagnostics.grad_noise_ref_prompts must be >= 0")
    if d.grad_noise_ref_every and not (d.grad_noise and d.grad_noise_sets >= 2):
        raise ConfigError(
            "diagnostics.grad_noise_ref_every needs diagnostics.grad_noise=true with grad_noise_sets >= 2 "
            "(the step's gradient is sketched by that probe); set it to 0 or turn grad_noise on"
        )

"""The memory plan: model-state bytes equal DeepSpeed's own estimators, the plan follows its knobs, `train --plan`
prints it without loading a model, and a plan over the device refuses on CUDA only; without CUDA the run header
says so in one line. Run: pytest tests/unit/test_memory_plan.py"""

import os

import pytest
import torch

from two_grpo import rollout
from two_grpo.config.schema import ConfigError
from two_grpo.models import fmt_params
from two_grpo.run import memory_plan
from two_grpo.run.memory_plan import GB, ModelShape, check_plan, make_plan, model_states_bytes

P, LARGEST = 1_543_714_304, 233_373_696  # Qwen2.5-Math-1.5B: unique params, the tied embedding


def ds_estimators():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    return estimate_zero2_model_states_mem_needs, estimate_zero3_model_states_mem_needs


@pytest.mark.parametrize("gpus", [1, 2, 8, 64])
@pytest.mark.parametrize("offload", [False, True])
def test_model_states_match_deepspeeds_estimators(gpus, offload):
    zero2, zero3 = ds_estimators()
    _, gpu2 = zero2(P, num_gpus_per_node=gpus, num_nodes=1, cpu_offload=offload)
    assert sum(model_states_bytes(P, LARGEST, 2, gpus, offload, False).values()) == gpu2
    _, gpu3, _ = zero3(P, LARGEST, num_gpus_per_node=gpus, num_nodes=1, cpu_offload=offload, cpu_offload_params=False)
    assert sum(model_states_bytes(P, LARGEST, 3, gpus, offload, False).values()) == gpu3
    if offload:
        _, gpu3p, _ = zero3(P, LARGEST, num_gpus_per_node=gpus, num_nodes=1, cpu_offload=True, cpu_offload_params=True)
        assert sum(model_states_bytes(P, LARGEST, 3, gpus, True, True).values()) == gpu3p


def test_parameter_counts_come_from_the_config_alone():
    from transformers import Qwen2Config

    from two_grpo.run.memory_plan import KNOWN_CONFIGS, model_shape

    s = model_shape(Qwen2Config(**KNOWN_CONFIGS["Qwen/Qwen2.5-Math-1.5B"]))
    assert (s.params, s.largest_layer_params) == (P, LARGEST)  # 1.54 B, as the model card says
    assert (s.vocab, s.layers, s.kv_hidden) == (151936, 28, 256)


SHAPE = ModelShape(
    params=P,
    largest_layer_params=LARGEST,
    vocab=151936,
    hidden=1536,
    intermediate=8960,
    layers=28,
    kv_hidden=256,
    positions=4096,
)


PAPER = [
    "experiment=paper_2grpo",
    "plan.device_memory_gb=80",
    "rollout.backend=vllm",
    "rollout.max_response_tokens=3072",
]
OVER = ["learner.gradient_checkpointing=false", "learner.micro_rollouts=64"]  # a plan over 80 GB


def paper(compose, *extra):
    return make_plan(compose([*PAPER, *extra]), SHAPE)


def test_the_plan_follows_its_knobs(compose):
    ref = paper(compose, "plan.gpus=8")
    assert ref.gpus == 8 and ref.device_gb == 80
    torch_states = sum(v for k, v in ref.terms_gb.items() if k.startswith("model "))
    assert torch_states == pytest.approx(8 * P / GB)  # bf16 params, grads, AdamW m and v
    z2 = paper(compose, "plan.gpus=8", "learner=zero2", "learner.micro_rollouts=8")
    assert z2.terms_gb["model optimizer"] == pytest.approx(12 * P / 8 / GB)
    no_ckpt = paper(compose, "learner.gradient_checkpointing=false")
    assert no_ckpt.terms_gb["activations (micro-batch)"] > 5 * ref.terms_gb["activations (micro-batch)"]
    half = paper(compose, "learner.micro_rollouts=4")
    assert half.terms_gb["activations (micro-batch)"] == pytest.approx(ref.terms_gb["activations (micro-batch)"] / 2)
    assert paper(compose, "learner.micro_tokens=4096").terms_gb["activations (micro-batch)"] == pytest.approx(
        ref.terms_gb["activations (micro-batch)"] / 8
    )
    c4 = paper(compose, "learner.logits_chunk_tokens=4096")
    assert c4.terms_gb["logits chunk"] == pytest.approx(4 * ref.terms_gb["logits chunk"])
    legacy = paper(compose, "learner.logits_chunk_tokens=-1")
    assert legacy.terms_gb["logits chunk"] == pytest.approx(8 * 4096 * 151936 * 20 / GB)
    assert paper(compose, "rollout.gpu_memory_utilization=0.5").terms_gb["vLLM (gpu_memory_utilization)"] == 40
    slept = paper(compose, "rollout.enable_sleep=true")
    assert slept.learner_phase_gb == pytest.approx(ref.learner_phase_gb - 24)


def test_a_plan_over_the_device_refuses_and_names_the_knob(compose):
    big = paper(compose, *OVER)
    assert not big.fits
    check_plan(big, enforce=False)  # plan.enforce=false: the user's call
    with pytest.raises(ConfigError, match="learner.gradient_checkpointing=true") as exc:
        check_plan(big, enforce=True)
    assert "\n" not in str(exc.value) and "plan.enforce=false" in str(exc.value)
    assert paper(compose).fits


def test_on_cuda_the_run_header_prints_the_plan_and_a_plan_over_the_device_stops_the_run(compose, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    lines = memory_plan.plan_lines(compose(PAPER), "Qwen/Qwen2.5-Math-1.5B")
    assert lines[0] == "memory plan per GPU (1 x 80 GB, learner torch (stage 0, full copy)):"
    assert lines[-1].startswith("  note: 1.54 B params, vocab 151936,") and lines[-1].endswith("rollout engine vllm")
    with pytest.raises(ConfigError, match="plan.enforce=false"):
        memory_plan.plan_lines(compose([*PAPER, *OVER]), "Qwen/Qwen2.5-Math-1.5B")


def test_without_cuda_the_run_header_says_so_in_one_line_and_plans_nothing(compose, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(memory_plan, "make_plan", lambda *a, **k: pytest.fail("planned a CPU run"))
    assert memory_plan.plan_lines(compose([*PAPER, *OVER]), "Qwen/Qwen2.5-Math-1.5B") == [
        "memory plan: no CUDA device, the run trains on CPU; `two-grpo train ... --plan` prints the per-GPU plan"
    ]  # and no refusal: the device's memory is not the run's


def test_param_counts_in_human_units():
    assert fmt_params(801_408) == "0.80 M"  # builtin:tiny: 100 x 128 tied embedding, 4 x 197,120 layers, norm 128
    assert fmt_params(3_150_000) == "3.15 M"
    assert fmt_params(999_000_000) == "999.00 M"
    assert fmt_params(1_000_000_000) == "1.00 B"
    assert fmt_params(P) == "1.54 B"


def test_train_plan_prints_the_paper_plan_and_loads_nothing(capsys, monkeypatch):
    import two_grpo.models.loading as models
    from two_grpo.cli import main

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("--plan loaded a model"))
    assert main(["train", "experiment=paper_2grpo", "--plan", "plan.gpus=8", "plan.device_memory_gb=80"]) == 0
    out = capsys.readouterr().out
    assert "memory plan per GPU (8 x 80 GB" in out and ": fits" in out
    assert "1.54 B params, vocab 151936" in out


def test_train_plan_without_cuda_plans_the_engine_auto_picks_here(capsys, monkeypatch):
    from two_grpo.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(rollout, "vllm_importable", lambda: True)  # auto still keeps builtin:tiny on hf on a CPU
    assert main(["train", "--plan"]) == 0  # builtin:tiny: the recipe's config, built or not
    out = capsys.readouterr().out
    assert "memory plan per GPU (1 x 80 GB, learner torch (stage 0, full copy)):" in out and "vLLM" not in out
    assert "note: 0.80 M params, vocab 100, micro-batch 32768 tokens (256 rows x 128)," in out
    assert out.rstrip().endswith("rollout engine hf") and ": fits" in out

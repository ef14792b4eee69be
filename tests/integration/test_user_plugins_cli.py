"""Issue 16 through the real CLI: TRL chat prompts, eval_frac, plug-in rewards, the zero-signal guard, the resume
hint and resume=auto, `two-grpo eval` on the run's own engine, and a task installed from examples/.
Run: pytest -m slow tests/integration/test_user_plugins_cli.py"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "two_grpo.cli"]
REWARDS = """
def has_digit(completion, answer, **fields):
    return 1.0 if any(c.isdigit() for c in completion) else 0.0

def always_zero(completion, answer, **fields):
    return 0.0

def text(completion, answer, **fields):
    return "high"
"""


def env(pythonpath: list[str] | None = None) -> dict[str, str]:
    paths = [*(pythonpath or []), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(paths)}


def run_cli(args, cwd, pythonpath=None, timeout=600):
    return subprocess.run([*CLI, *args], cwd=cwd, env=env(pythonpath), capture_output=True, text=True, timeout=timeout)


def run_in_process(args, cwd, capsys, monkeypatch) -> tuple[int, str]:
    """`two-grpo ARGS` through the CLI's entry point in this process (exit code, stderr): for runs that stop at a
    config or input error, which need no fresh interpreter (a subprocess pays seconds of imports). The real
    process's one-line error is checked by the subprocess cases of this file (the runtime and unknown-task ones)."""
    from two_grpo.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err


def fast(model_dir, steps=2):
    return [
        "experiment=smoke",
        f"model.path={model_dir}",
        "rollout=hf",
        "logger.progress=false",
        f"budget.max_steps={steps}",
        "eval.prompts=4",
    ]


def rows(run_dir: Path, name="metrics.jsonl"):
    return [json.loads(x) for x in (run_dir / name).read_text().splitlines()]


def test_trl_chat_prompts_use_the_chat_template_and_other_prompts_are_refused(
    tmp_path, tiny_model_dir, capsys, monkeypatch
):
    records = [
        {"prompt": [{"role": "system", "content": "Add."}, {"role": "user", "content": f"{i}+{i}="}], "solution": str(2 * i)}
        for i in range(8)
    ]  # fmt: skip
    (tmp_path / "trl_style.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    issue_cmd = shlex.split(
        "train task=jsonl task.data.path=trl_style.jsonl task.data.prompt_field=prompt task.data.answer_field=solution"
    )
    p = run_cli([*issue_cmd, *fast(tiny_model_dir), "logger.dump_rollouts_every=1", "hydra.run.dir=run"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    dumped = {json.loads(x)["prompt"] for x in (tmp_path / "run/rollouts/step_000001.jsonl").read_text().splitlines()}
    expected = {f"Add.\n{i}+{i}=\nA: " for i in range(8)}  # the tiny model's chat template, not a Python repr
    assert dumped <= expected and dumped
    # no eval_path: said plainly (issue item 4), and the data gate does not claim "0 overlap"
    assert "two-grpo: warning: no held-out eval: task.data.eval_path is not set" in p.stderr
    assert "no eval set (overlap not checked)" in p.stdout and "overlap the eval set" not in p.stdout

    (tmp_path / "bad.jsonl").write_text(
        json.dumps(records[0]) + "\n" + json.dumps({"prompt": 7, "solution": "1"}) + "\n"
    )
    bad_args = [*issue_cmd[:2], "task.data.path=bad.jsonl", *issue_cmd[3:], *fast(tiny_model_dir)]
    code, err = run_in_process(bad_args, tmp_path, capsys, monkeypatch)
    assert code == 2
    assert err.strip().splitlines() == [
        "two-grpo: error: bad.jsonl:2: record 2: 'prompt' is a int, not a string or a list of "
        '{"role", "content"} messages; fix that record'
    ]


def test_eval_frac_holds_out_a_split_that_is_evaluated_and_not_trained(tmp_path, tiny_model_dir):
    rows_in = [
        {"problem": f"Compute the sum {i} plus {i} now please, then stop.", "answer": str(2 * i)} for i in range(40)
    ]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_in))
    args = ["task=jsonl", "task.data.path=t.jsonl", "task.data.eval_frac=0.1", "task.data.use_chat_template=false"]
    p = run_cli(["train", *args, *fast(tiny_model_dir), "hydra.run.dir=run"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "data gate: 36 training prompts; 0 duplicates removed; 0 overlap the eval set" in p.stdout
    assert "no held-out eval" not in p.stderr
    evals = rows(tmp_path / "run", "eval.jsonl")
    assert [e["step"] for e in evals] == [0, 2] and "eval/math/mean@4" in evals[
        -1
    ]  # eval=heldout: 4 samples per prompt


def test_reward_plugins_weighted_and_logged_per_function(tmp_path, tiny_model_dir, capsys, monkeypatch):
    rf = tmp_path / "my_rewards.py"
    rf.write_text(REWARDS)
    args = ["train", f"task.reward_fns=[{rf}:has_digit,task]", "task.reward_weights=[0.5,2.0]", *fast(tiny_model_dir)]
    p = run_cli([*args, "hydra.run.dir=run"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count(f"two-grpo: loading user code: reward function has_digit() from {rf}") == 1
    for r in rows(tmp_path / "run"):
        assert r["rollout/reward_mean"] == pytest.approx(0.5 * r["reward/has_digit_mean"] + 2.0 * r["reward/task_mean"])
        assert r["reward/has_digit_mean"] > 0  # the warm-started model answers with digits
    code, err = run_in_process(
        ["train", f"task.reward_fn={rf}:nope", *fast(tiny_model_dir)], tmp_path, capsys, monkeypatch
    )
    assert code == 2 and err.strip().splitlines() == [
        f"two-grpo: error: task.reward_fn='{rf}:nope': {rf} has no function 'nope' "
        "(functions there: always_zero, has_digit, text)"
    ]
    code, err = run_in_process(
        ["train", "task.reward_fn=nowhere.py:f", *fast(tiny_model_dir)], tmp_path, capsys, monkeypatch
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no file" in err
    text = run_cli(["train", f"task.reward_fn={rf}:text", *fast(tiny_model_dir)], tmp_path)
    assert text.returncode == 2, text.stderr[-2000:]
    assert text.stderr.strip().splitlines()[-1] == (
        f"two-grpo: error: reward {rf}:text returned str ('high'), not a float; the reward function must return a float"
    )


def test_a_reward_that_never_fires_warns_once_then_stops_with_exit_4(tmp_path, tiny_model_dir):
    rf = tmp_path / "r.py"
    rf.write_text(REWARDS)
    args = ["train", f"task.reward_fn={rf}:always_zero", *fast(tiny_model_dir, steps=40)]
    args += ["guards.zero_signal_warn_batches=2", "guards.zero_signal_stop_batches=3", "hydra.run.dir=run"]
    p = run_cli(args, tmp_path)
    assert p.returncode == 4, p.stderr[-3000:]
    warnings = [x for x in p.stderr.splitlines() if "no learning signal" in x]
    assert len(warnings) == 1 and "in the last 2 rollout batches every group's rewards were equal" in warnings[0]
    assert "no gradient" in warnings[0]
    assert (
        p.stderr.strip()
        .splitlines()[-1]
        .startswith("two-grpo: error: rollout batch 2: 3 rollout batches in a row without learning signal")
    )
    assert [r["rollout/zero_var_group_frac"] for r in rows(tmp_path / "run")] == [1.0] * 6  # 3 batches x 2 updates


def start_and_preempt(args, cwd) -> subprocess.CompletedProcess:
    """Start a run with the default run dir under cwd/runs, SIGTERM it after its first metrics line."""
    before = set((cwd / "runs").glob("*")) if (cwd / "runs").exists() else set()
    proc = subprocess.Popen(
        [*CLI, *args], cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        new = [d for d in (cwd / "runs").glob("*") if d not in before] if (cwd / "runs").exists() else []
        if new and (new[0] / "metrics.jsonl").exists() and (new[0] / "metrics.jsonl").read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_preemption_prints_the_exact_resume_command_and_resume_auto_finds_the_run(tmp_path, tiny_model_dir):
    # enough steps that the SIGTERM (sent after the first metrics line) lands mid-run: with the shared-prefix
    # learner a 6-step run could finish inside the 0.2 s poll, and a finished run rightly exits 0
    steps = 60
    args = ["train", *fast(tiny_model_dir, steps=steps), "eval.prompts=0", "checkpoint.every_steps=2"]
    first = start_and_preempt(args, tmp_path)
    assert first.returncode == 3, first.stderr[-3000:]
    hint = first.stderr.strip().splitlines()[-1]
    (run1,) = (tmp_path / "runs").iterdir()
    assert hint.endswith(f"; to resume: two-grpo train resume=runs/{run1.name}")
    resumed = run_cli(shlex.split(hint.split("to resume: two-grpo ", 1)[1]), tmp_path)  # the printed command
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and rows(run1)[-1]["step"] == steps and (run1 / "summary.json").is_file()

    second = start_and_preempt(args, tmp_path)
    assert second.returncode == 3, second.stderr[-3000:]
    (run2,) = [d for d in (tmp_path / "runs").iterdir() if d != run1]
    auto = run_cli([*args, "resume=auto"], tmp_path)
    assert auto.returncode == 0, auto.stderr[-3000:]
    assert f"two-grpo: resume=auto: resuming runs/{run2.name} (the newest unfinished run" in auto.stdout
    assert rows(run2)[-1]["step"] == steps and len(list((tmp_path / "runs").iterdir())) == 2


def test_eval_uses_the_runs_own_engine_and_reproduces_its_final_eval(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    args = ["train", *fast(tiny_model_dir), "eval.prompts=8", "eval.samples_per_prompt=4", "eval.temperature=1.0"]
    t = run_cli([*args, f"hydra.run.dir={run_dir}"], tmp_path)
    assert t.returncode == 0, t.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["rollout_backend"] == "hf"
    # the run's own command would now pick another engine (like rollout=auto once vLLM is installed)
    overrides = run_dir / "overrides.txt"
    overrides.write_text(overrides.read_text().replace("rollout=hf", "rollout=vllm"))
    e = run_cli(["eval", str(run_dir)], tmp_path)
    assert e.returncode == 0, e.stderr[-3000:]
    assert f"two-grpo eval: engine hf (the run's own engine, from {run_dir / 'summary.json'}" in e.stdout
    saved = json.loads(next((run_dir / "eval").glob("eval-*.json")).read_text())
    final = rows(run_dir, "eval.jsonl")[-1]
    assert saved["engine"] == "hf"
    assert saved["metrics"] == {k: v for k, v in final.items() if k.startswith("eval/")}  # the same samples


def test_a_task_installed_from_examples_trains(tmp_path, tiny_model_dir):
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target)]
    subprocess.run([*pip, str(REPO / "examples" / "my_task")], check=True, capture_output=True, timeout=300)
    p = run_cli(["train", "task.name=doubling", *fast(tiny_model_dir), "hydra.run.dir=run"], tmp_path, [str(target)])
    assert p.returncode == 0, p.stderr[-3000:]
    assert (
        "two-grpo: loading user code: task 'doubling' = my_task:DoublingTask (entry point two_grpo.tasks)" in p.stderr
    )
    assert [r["step"] for r in rows(tmp_path / "run")] == [1, 2]
    assert "eval/doubling/mean@4" in rows(tmp_path / "run", "eval.jsonl")[-1]
    m = run_cli(
        [
            "train",
            "task.module=my_task:DoublingTask",
            "+task.options.max_n=60",
            *fast(tiny_model_dir),
            "hydra.run.dir=m",
        ],
        tmp_path,
        [str(target)],
    )
    assert m.returncode == 0, m.stderr[-3000:]
    assert "data gate: 54 training prompts" in m.stdout  # 60 problems, every 10th held out
    unknown = run_cli(["train", "task.name=doublin", *fast(tiny_model_dir)], tmp_path, [str(target)])
    assert unknown.returncode == 2
    assert (
        "task.name='doublin' is not allowed; choose one of: toy_arith, math, reasoning_gym, doubling" in unknown.stderr
    )

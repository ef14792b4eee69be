"""`two-grpo sweep sweep=<preset> [KEY=VALUE ...]`: run a preset's members, each in its own OS process.

    two-grpo sweep sweep=paper dry_run=true                  the plan: overrides, projected steps/rollouts/tokens
    two-grpo sweep sweep=smoke                               4 configurations x 2 seeds on the embedded default
    two-grpo sweep sweep=matched experiment=sweep_cpu seeds=[0,1,2]
    two-grpo sweep sweep=group_size sweep.hold=rollouts      preset fields: sweep.<field>=VALUE
    two-grpo sweep sweep=smoke parallel=2                    2 members at a time (hydra.sweeper.max_batch_size)
    two-grpo sweep sweep=smoke parallel=1                    one at a time, every core (when wall-clock is compared)
    two-grpo sweep sweep=paper budget=matched_rollouts       every member stops at the baseline's total rollouts
    two-grpo sweep sweep=study                               the whole answer on a CPU (then: two-grpo report)
    two-grpo sweep sweep=paper launcher=submitit_slurm hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1

Sweep keys: sweep, seeds, dry_run, dir (default sweeps/<preset>[-<variant>]), parallel (an integer >= 1, or auto:
min(members, cores), 1 on a GPU machine; default auto on the local launcher, 1 on Slurm), launcher
(submitit_local | submitit_slurm), timeout_min, budget=epochs|matched_rollouts (any other budget=... is the
train config group), sweep.<preset field>, hydra.<...> (to the launcher). Every other
KEY=VALUE is a `two-grpo train` override applied to every member. Members run through Hydra's multirun with the
submitit launcher; finished members (summary.json) are skipped, unfinished ones rerun in the same dir.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from two_grpo.config.schema import ConfigError
from two_grpo.study.sweep_plan import BUDGETS, Member, budget_overrides, load_preset, plan_members, project

SWEEP_KEYS = ("sweep", "seeds", "dry_run", "dir", "parallel", "launcher", "timeout_min")
LAUNCHERS = ("submitit_local", "submitit_slurm")
# The local launcher's default `parallel`: on 2 cores 2 members side by side at 1 thread each beat 1 at a time
# with 2 threads (`make bench` section members; README "Comparing rollout budgets"). Slurm's default is 1.
DEFAULT_PARALLEL_LOCAL: int | str = "auto"


def resolve_parallel(value: int | str, members: int, cpus: int | None, launcher: str, gpus: int = 0) -> int:
    """`parallel` -> members run at a time. `auto` (local launcher only) = min(members, cpus), each member then
    getting cpus // parallel threads (sweep_job.member_threads_env); 1 when this machine has a GPU (members would
    share it). Integers >= 1 pass through. Raises ConfigError."""
    if value == "auto":
        if launcher != "submitit_local":
            raise ConfigError(
                f"parallel=auto sizes to this machine's cores (launcher=submitit_local); with launcher={launcher} "
                "give an integer, e.g. parallel=8"
            )
        return 1 if gpus > 0 else max(1, min(members, cpus or 1))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"parallel={value!r} must be an integer >= 1 or auto, e.g. parallel=2")
    return value


def parse_args(argv: list[str]) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
    """argv -> (sweep keys, preset field overrides, hydra/launcher overrides, member overrides)."""
    import yaml

    keys: dict[str, Any] = {"sweep": "smoke", "dry_run": False, "parallel": None, "launcher": "submitit_local"}
    keys["timeout_min"] = 7 * 24 * 60
    preset, hydra, members = [], [], []
    for a in argv:
        if "=" not in a:
            raise ConfigError(f"argument {a!r} is not KEY=VALUE (see `two-grpo sweep --help`)")
        k, v = a.split("=", 1)
        if k == "budget" and v in BUDGETS:  # the sweep's budget; other budget=... values are the config group
            preset.append(f"budget={v}")
        elif k in SWEEP_KEYS:
            keys[k] = yaml.safe_load(v) if k not in ("sweep", "dir", "launcher") else v
        elif k.startswith("sweep."):
            preset.append(f"{k[len('sweep.') :]}={v}")
        elif k.startswith("hydra."):
            hydra.append(a)
        else:
            members.append(a)
    if keys["launcher"] not in LAUNCHERS:
        raise ConfigError(
            f"launcher={keys['launcher']}: choose one of {', '.join(LAUNCHERS)} "
            "(Hydra's basic launcher runs members inside one process, which real runs must not do)"
        )
    if keys["parallel"] is None:
        keys["parallel"] = DEFAULT_PARALLEL_LOCAL if keys["launcher"] == "submitit_local" else 1
    resolve_parallel(keys["parallel"], 1, 1, keys["launcher"])  # a bad value fails before any member is composed
    if "seeds" in keys and not (isinstance(keys["seeds"], list) and all(isinstance(s, int) for s in keys["seeds"])):
        raise ConfigError(f"seeds={keys['seeds']!r} must be a list of integers, e.g. seeds=[0,1,2]")
    return keys, preset, hydra, members


def visible_gpus() -> int:
    """CUDA devices this process sees (torch is already imported by the members' config check)."""
    import torch

    return torch.cuda.device_count()


def check_and_project(members: list[Member], assume_train_prompts: int) -> dict[str, dict[str, Any]]:
    """Compose and validate every member's config (a bad one fails the sweep before anything runs) and
    project its budget. Raises ConfigError naming the member. Members that differ only in `seed=` (one
    configuration's seeds: an int the config does not validate or project on) share one composition."""
    import copy

    from two_grpo.config.compose import compose, format_config_error, is_config_exception, to_train_config
    from two_grpo.study.sweep_plan import count_train_prompts, override_key

    out: dict[str, dict[str, Any]] = {}
    counted: dict[str, tuple[int, str]] = {}
    by_config: dict[tuple[str, ...], dict[str, Any]] = {}
    for m in members:
        config = tuple(o for o in m.overrides if override_key(o) != "seed")
        if config in by_config:
            out[m.run_id] = copy.deepcopy(by_config[config])
            continue
        try:
            typed = to_train_config(compose([*m.overrides, f"run_id={m.run_id}"]))
        except ConfigError as exc:
            raise ConfigError(f"member {m.run_id}: {exc}") from None
        except Exception as exc:
            if not is_config_exception(exc):
                raise
            raise ConfigError(f"member {m.run_id}: {format_config_error(exc, m.overrides)}") from None
        task_key = json.dumps([typed.task.name, asdict(typed.task.arith), asdict(typed.task.data)], sort_keys=True)
        if task_key not in counted:
            counted[task_key] = count_train_prompts(typed, assume_train_prompts)
        n, how = counted[task_key]
        proj = project(typed, n)
        proj.update(train_prompts=n, train_prompts_source=how, group_size=typed.group_size, algo=asdict(typed.algo))
        out[m.run_id] = proj
        by_config[config] = copy.deepcopy(proj)
    return out


def member_status(run_dir: Path) -> str:
    from two_grpo.study.sweep_job import is_finished, running_pid

    if is_finished(run_dir):
        return "done"
    if running_pid(run_dir) is not None:
        return "running"
    return "unfinished" if (run_dir / "metrics.jsonl").exists() else "new"


def fmt_int(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v / 1e6:,.1f} M" if v >= 1e8 else f"{v:,}"


def print_plan(preset_name: str, preset: Any, members: list[Member], proj: dict, sweep_dir: Path, cli: list[str]):
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=max(Console().width, 120))
    base = next((m for m in members if m.name == preset.baseline), None)
    base_r = proj[base.run_id]["rollouts"] if base else None
    console.print(f"[bold]sweep {preset_name}[/]  {preset.description}")
    if preset.claim:
        console.print(f"claim tested: {preset.claim}", soft_wrap=True)
    matched = preset.matched_members or (["every member"] if preset.budget == "matched_rollouts" else [])
    console.print(
        f"budget: {preset.budget}"
        + (f" (matched rollouts: {', '.join(matched)})" if matched else " (each member's own: equal epochs)")
    )
    console.print(f"dir: {sweep_dir}   overrides for every member: {' '.join(cli) or '(none)'}")
    first = proj[members[0].run_id]
    console.print(f"training prompts: {first['train_prompts']:,} ({first['train_prompts_source']})")
    t = Table(show_lines=False)
    for c in ("member", "seed", "status", "G", "opt. steps", "rollouts", "tokens <=", "rollouts vs base"):
        t.add_column(c, justify="left" if c in ("member", "status") else "right")
    for m in members:
        p = proj[m.run_id]
        ratio = f"{100 * p['rollouts'] / base_r:.1f}%" if base_r and p["rollouts"] is not None else "-"
        t.add_row(
            m.name,
            str(m.seed),
            member_status(sweep_dir / m.run_id),
            str(p["group_size"]),
            fmt_int(p["steps"]),
            fmt_int(p["rollouts"]),
            fmt_int(p["tokens_max"]),
            ratio,
        )
    console.print(t)
    console.print("members' train overrides (run id = <config>-s<seed>):")
    shown: set[str] = set()
    for m in members:
        if m.config_id not in shown:
            shown.add(m.config_id)
            console.print(
                f"  {m.config_id}: {' '.join(o for o in m.overrides if not o.startswith('seed='))}", soft_wrap=True
            )


EXAMPLE_GROUPS = ([1.0, 0.0], [1.0, 1.0], [0.5, 0.0])  # one batch of three G=2 groups


def advantage_examples(algo: dict[str, Any]) -> list[float]:
    """A member's advantages on EXAMPLE_GROUPS as one batch (rewards in order)."""
    import torch

    from two_grpo.algo.advantages import compute_advantages

    rewards = torch.tensor([r for g in EXAMPLE_GROUPS for r in g])
    ids = torch.tensor([i for i, g in enumerate(EXAMPLE_GROUPS) for _ in g])
    adv, _ = compute_advantages(
        rewards, ids, algo["advantage"], algo["adv_std"], algo["adv_eps"], algo.get("batch_std_of", "centered")
    )
    return adv.tolist()


def print_advantage_examples(members: list[Member], proj: dict) -> None:
    """Each configuration's advantage on a G=2 example batch: what the ablation changes, in numbers."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title="advantages on one G=2 example batch (groups " + ", ".join(map(str, EXAMPLE_GROUPS)) + ")")
    for c in ("member", "G", "advantage", *[f"{g}" for g in EXAMPLE_GROUPS]):
        t.add_column(c, justify="left" if c in ("member", "advantage") else "right")
    shown: set[str] = set()
    for m in members:
        if m.config_id in shown:
            continue
        shown.add(m.config_id)
        a = proj[m.run_id]["algo"]
        adv = advantage_examples(a)
        desc = a["advantage"] + {"grpo": f" ({a['adv_std']} std)", "batch_std": f" (of {a.get('batch_std_of')})"}.get(
            a["advantage"], ""
        )
        cells = [f"{adv[2 * i]:+.4f}, {adv[2 * i + 1]:+.4f}" for i in range(len(EXAMPLE_GROUPS))]
        t.add_row(m.name, str(proj[m.run_id]["group_size"]), desc, *cells)
    Console(highlight=False, width=max(Console().width, 120)).print(t)


def write_plan(
    sweep_dir: Path,
    preset_name: str,
    preset: Any,
    members: list[Member],
    proj: dict,
    sweep_command: list[str],
    parallel: int = 1,
    launcher: str = "submitit_local",
):
    sweep_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for m in members:
        run_dir = (sweep_dir / m.run_id).resolve()
        command = ["two-grpo", "train", *m.overrides, f"run_id={m.run_id}", f"hydra.run.dir={run_dir}"]
        rows.append({**asdict(m), "run_dir": str(run_dir), "command": command, "projected": proj[m.run_id]})
    plan = {
        "preset": preset_name,
        "description": preset.description,
        "baseline": preset.baseline,
        "claim": preset.claim,
        "budget": preset.budget
        + (f" (matched: {', '.join(preset.matched_members)})" if preset.matched_members else ""),
        "min_effect": preset.min_effect,
        "comparisons": preset.comparisons,
        "parallel": parallel,
        "launcher": launcher,
        "sweep_command": sweep_command,
        "members": rows,
    }
    tmp = sweep_dir / ".plan.json.tmp"
    tmp.write_text(json.dumps(plan, indent=2))
    tmp.replace(sweep_dir / "plan.json")
    (sweep_dir / "commands.sh").write_text("\n".join(shlex.join(r["command"]) for r in rows) + "\n")
    return sweep_dir / "plan.json"


def launch(sweep_dir: Path, plan_path: Path, run_ids: list[str], keys: dict[str, Any], hydra: list[str]) -> list[dict]:
    """Run `run_ids` through Hydra's multirun with the submitit launcher; returns each job's return value."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from two_grpo.config.compose import conf_dir
    from two_grpo.study.sweep_job import JOB_CONFIG, register_job_config, run_member

    register_job_config()
    overrides = [
        f"member={','.join(run_ids)}",
        f"plan='{plan_path.resolve()}'",
        f"hydra/launcher={keys['launcher']}",
        f"hydra.sweeper.max_batch_size={keys['parallel']}",
        f"hydra.sweep.dir='{sweep_dir.resolve()}'",
        "hydra.sweep.subdir=${member}",
        "hydra.output_subdir=null",
        "hydra/job_logging=disabled",
        f"hydra.launcher.timeout_min={keys['timeout_min']}",
        f"hydra.launcher.submitit_folder='{(sweep_dir / '.submitit').resolve()}/%j'",
        *hydra,
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3", job_name="sweep"):
        batches = GlobalHydra.instance().hydra.multirun(  # type: ignore[union-attr]
            config_name=JOB_CONFIG, task_function=run_member, overrides=overrides
        )
    return [r.return_value for batch in batches for r in batch]


def cmd_sweep(argv: list[str]) -> int:
    from two_grpo.config.compose import conf_dir

    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return 0
    try:
        keys, preset_ovr, hydra, cli = parse_args(argv)
        preset = load_preset(conf_dir(), keys["sweep"], preset_ovr)
        seeds = keys.get("seeds", preset.seeds)
        members = plan_members(preset, cli, seeds)
        names = {m.name for m in members}
        if preset.only:  # a subset: keep the comparisons (and the baseline) it still contains
            preset.comparisons = [pair for pair in preset.comparisons if set(pair) <= names]
            preset.matched_members = [n for n in preset.matched_members if n in names]
        if preset.baseline and preset.baseline not in names:
            raise ConfigError(f"sweep preset {keys['sweep']}: baseline {preset.baseline!r} is not a member")
        bad = [pair for pair in preset.comparisons if len(pair) != 2 or not set(pair) <= names]
        if bad:
            raise ConfigError(f"sweep preset {keys['sweep']}: comparisons {bad} must be [member, member] pairs")
        proj = check_and_project(members, preset.assume_train_prompts)
        extra = budget_overrides(preset, members, proj, cli)
        if extra:  # equal budgets: re-plan with the matched rollouts / common eval cadence (new run ids)
            members = plan_members(preset, cli, seeds, extra)
            proj = check_and_project(members, preset.assume_train_prompts)
    except ConfigError as exc:
        print(f"two-grpo: error: {exc}", file=sys.stderr)
        return 2
    default_dir = (
        f"sweeps/{keys['sweep']}"
        + (f"-{preset.scale}" if preset.scales and preset.scale else "")
        + (f"-{preset.variant}" if preset.variants and preset.variant else "")
    )
    sweep_dir = Path(str(keys.get("dir") or default_dir))
    return run_sweep(keys, preset, members, proj, sweep_dir, cli, hydra, ["two-grpo", "sweep", *argv])


def run_sweep(keys, preset, members, proj, sweep_dir: Path, cli, hydra, command: list[str]) -> int:
    """Print the plan, then (unless dry_run) run the unfinished members, one line per finished member."""
    from two_grpo.run.console import console
    from two_grpo.study.sweep_job import member_threads_env

    gpus = visible_gpus() if keys["parallel"] == "auto" else 0
    parallel = resolve_parallel(keys["parallel"], len(members), os.cpu_count(), keys["launcher"], gpus)
    keys = {**keys, "parallel": parallel}  # the integer: plan.json, the launcher and the report's caveat see it
    print_plan(keys["sweep"], preset, members, proj, sweep_dir, cli)
    env = member_threads_env(dict(os.environ), keys["parallel"], os.cpu_count(), keys["launcher"])
    each = f", OMP_NUM_THREADS={env['OMP_NUM_THREADS']} each" if "OMP_NUM_THREADS" in env else ""
    console.print(f"parallel={keys['parallel']}: member(s) at a time{each}")
    if keys["dry_run"]:
        if preset.show_advantages:
            print_advantage_examples(members, proj)
        return 0
    plan_path = write_plan(sweep_dir, keys["sweep"], preset, members, proj, command, keys["parallel"], keys["launcher"])
    status = {m.run_id: member_status(sweep_dir / m.run_id) for m in members}
    todo = [m.run_id for m in members if status[m.run_id] in ("new", "unfinished")]
    skipped = [r for r, s in status.items() if s == "done"]
    running = [r for r, s in status.items() if s == "running"]
    console.print(
        f"{len(skipped)} finished (skipped), {len(running)} still running elsewhere (skipped), {len(todo)} to run"
    )
    results: list[dict] = []
    if todo:
        t0 = time.time()
        with MemberWatcher(sweep_dir, todo, lambda line: console.print(line, soft_wrap=True)):  # one line each
            results = launch(sweep_dir, plan_path, todo, keys, hydra)
        console.print(f"ran {len(todo)} member(s) in {time.time() - t0:.0f}s")
    failed = [r for r in results if r.get("rc") != 0]
    for r in failed:
        log = sweep_dir / r["run_id"] / "train.log"
        console.print(f"[red]FAILED[/] {r['run_id']} rc={r.get('rc')} {r.get('error', '')}  log: {log}")
    console.print(f"sweep dir: {sweep_dir}", soft_wrap=True)
    console.print(f"report: two-grpo report {sweep_dir}", soft_wrap=True)  # a command to paste: never wrapped
    return 1 if failed or running else 0


def final_metric(summary: dict[str, Any]) -> str:
    """The headline number of a finished member: its held-out eval at the end, else the late solve rate."""
    for key, value in summary.items():
        if key.startswith("eval/") and "mean@" in key and key.endswith("(end)"):
            return f"{key.removesuffix(' (end)')} {value:.3f}"
    return f"solve_rate_last20pct {summary.get('solve_rate_last20pct', float('nan')):.3f}"


class MemberWatcher:
    """While the launcher runs, print one line per member that finishes (its summary.json appears): name,
    seconds, final metric, and the sweep's ETA (mean time per finished member x members left)."""

    def __init__(self, sweep_dir: Path, run_ids: list[str], emit: Any, poll_s: float = 1.0):
        import threading

        self.sweep_dir, self.left, self.emit, self.poll_s = sweep_dir, list(run_ids), emit, poll_s
        self.total, self.t0 = len(run_ids), time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> MemberWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.check()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check()

    def check(self) -> None:
        for run_id in list(self.left):
            path = self.sweep_dir / run_id / "summary.json"
            if not path.is_file():
                continue
            try:
                summary = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # being written
            self.left.remove(run_id)
            done, elapsed = self.total - len(self.left), time.time() - self.t0
            eta = elapsed / done * len(self.left)
            from two_grpo.run.console import fmt_duration

            self.emit(
                f"member {done}/{self.total} done: {run_id}  {summary.get('wallclock_s', 0.0):.0f}s  "
                f"{final_metric(summary)}  sweep ETA {fmt_duration(eta)}"
            )


def split_sweep_values(value: str) -> list[str]:
    """Hydra's `a,b,c` (commas outside brackets and quotes) -> ['a', 'b', 'c']."""
    out, depth, quote, cur = [], 0, "", ""
    for ch in value:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        cur += ch
    return [*out, cur]


def multirun_plan(argv: list[str]) -> tuple[str, Any, list[Member], list[str], list[str], str]:
    """`train -m` arguments -> (sweep name, preset, members, common overrides, hydra overrides, sweep dir).
    Every KEY=A,B is an axis (the members are the product), seed=... gives the seeds, the rest is common."""
    import itertools

    from two_grpo.study.sweep_plan import SweepPreset, config_hash, slug

    axes: dict[str, list[str]] = {}
    common, hydra, seeds, sweep_dir = [], [], [0], ""
    for a in argv:
        if a.startswith("dry_run="):  # not a train key: the sweep's own (print the plan only)
            continue
        if "=" not in a:
            raise ConfigError(f"argument {a!r} is not KEY=VALUE (train -m takes KEY=A,B,... overrides)")
        k, v = a.split("=", 1)
        if k == "hydra.sweep.dir":
            sweep_dir = v
            continue
        if k.startswith("hydra."):
            hydra.append(a)
            continue
        if v.startswith(("range(", "choice(", "interval(", "glob(", "tag(", "sort(", "shuffle(")):
            raise ConfigError(f"{a}: Hydra's sweep functions are not supported; list the values: {k}=A,B,C")
        values = split_sweep_values(v)
        if k.lstrip("+") == "seed":
            if not all(x.strip().lstrip("-").isdigit() for x in values):
                raise ConfigError(f"{a}: seeds must be integers, e.g. seed=0,1,2")
            seeds = [int(x) for x in values]
        elif len(values) > 1:
            axes[k] = values
        else:
            common.append(a)
    members: dict[str, list[str]] = {}
    for combo in itertools.product(*axes.values()) if axes else [()]:
        own = [f"{k}={v}" for k, v in zip(axes, combo)]
        name = "_".join(slug(f"{k.rsplit('.', 1)[-1]}{v}") for k, v in zip(axes, combo)) or "run"
        members[name] = own
    named = [a for a in argv if not a.startswith(("dry_run=", "hydra."))]
    name = "multirun-" + "-".join(slug(k.rsplit(".", 1)[-1]) for k in [*axes, "seed"]) + "-" + config_hash(named)
    preset = SweepPreset(description=f"two-grpo train -m {' '.join(argv)}", seeds=seeds, members=members)
    return name, preset, plan_members(preset, common, seeds), common, hydra, sweep_dir or f"sweeps/{name}"


def cmd_multirun(argv: list[str]) -> int:
    """`two-grpo train -m KEY=A,B ...`: Hydra's multirun syntax on the sweep machinery (sweep.py): each member in
    its own process, finished members skipped, the same command resumes, a dir `two-grpo report` reads."""
    from two_grpo.run.console import console

    try:
        name, preset, members, common, hydra, sweep_dir = multirun_plan(argv)
        proj = check_and_project(members, 0)
    except ConfigError as exc:
        print(f"two-grpo: error: {exc}", file=sys.stderr)
        return 2
    parallel = next((int(h.split("=", 1)[1]) for h in hydra if h.startswith("hydra.sweeper.max_batch_size=")), 1)
    dry_run = any(a.lower() in ("dry_run=true", "dry_run=1") for a in argv)
    keys = {"sweep": name, "dry_run": dry_run, "parallel": parallel, "launcher": "submitit_local"}
    keys["timeout_min"] = 7 * 24 * 60
    hydra = [h for h in hydra if not h.startswith("hydra.sweeper.max_batch_size=")]
    console.print(
        f"two-grpo train -m: {len(members)} member(s) through the sweep machinery into {sweep_dir}", soft_wrap=True
    )
    return run_sweep(keys, preset, members, proj, Path(sweep_dir), common, hydra, ["two-grpo", "train", "-m", *argv])

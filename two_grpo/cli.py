"""`two-grpo` command line: argv dispatch, Hydra composition, one-line config errors. Nothing else.

    two-grpo train [KEY=VALUE ...] [--cfg job]   compose conf/train.yaml with overrides and train
    two-grpo train [KEY=VALUE ...] --plan          print the per-GPU memory plan (plan.gpus=N) and exit
    two-grpo train resume=RUN_DIR                 resume the run in RUN_DIR with its saved config
    two-grpo train resume=auto [KEY=VALUE ...]    resume the newest unfinished run with this config under runs/
    two-grpo build-model [task=...]               build the embedded default model (builtin:tiny) now
    two-grpo eval [RUN_DIR|MODEL_DIR] [KEY=VALUE ...]   Mean@k / Pass@k of a run's final weights or a model
    two-grpo sweep sweep=<preset> [KEY=VALUE ...]       run a preset's members (dry_run=true: print the plan)
    two-grpo report <SWEEP_DIR|RUN_DIR ...>             table, CSV, Markdown and plots over seeds
    two-grpo probe [KEY=VALUE ...]                      before training: predicted signal per group size G
    two-grpo train -m KEY=A,B [KEY=C,D ...]             a sweep over the product (each member its own process)
    two-grpo train --help [KEY] | two-grpo explain KEY  the knobs and groups, or one key's type/default/meaning
    two-grpo --version

Configs come from `two_grpo/conf` in an installed wheel, else from the repository's `conf/`.
Running the same command again on a hydra.run.dir that holds an unfinished run with a checkpoint resumes it.
Exit codes: 0 done (or already finished), 1 crashed, 2 bad config or input (nothing trained),
3 preempted by SIGTERM/SIGUSR1/SIGINT (checkpoint saved; `two-grpo train resume=RUN_DIR` resumes),
4 stopped by a guard (non-finite updates in a row, too many failed rewards, or no learning signal for
guards.zero_signal_stop_batches rollout batches; last good checkpoint kept).
"""

from __future__ import annotations

import difflib
import os
import secrets
import sys
import time
from pathlib import Path

from two_grpo.config.compose import compose, format_config_error, is_config_exception, to_train_config

EXIT_BAD_INPUT = 2
USAGE = __doc__.split("\n\n")[1]


def cmd_train(argv: list[str]) -> int:
    from omegaconf import OmegaConf

    from two_grpo.config.schema import ConfigError

    show = None
    if "--cfg" in argv or "-c" in argv:
        i = argv.index("--cfg") if "--cfg" in argv else argv.index("-c")
        show = argv[i + 1] if i + 1 < len(argv) else "job"
        argv = argv[:i] + argv[i + 2 :]
    show_plan = "--plan" in argv
    argv = [a for a in argv if a != "--plan"]
    if "--help" in argv or "-h" in argv:
        return cmd_explain(argv[argv.index("--help" if "--help" in argv else "-h") + 1 :][:1])
    if "--version" in argv:
        return cmd_version([])
    refused = next((a for a in argv if a.split("=", 1)[0] in HYDRA_FLAGS_REFUSED), None)
    if refused:
        print(f"two-grpo: error: {refused}: {HYDRA_FLAGS_REFUSED[refused.split('=', 1)[0]]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if any(a in ("-m", "--multirun") or a.replace(" ", "") in ("hydra.mode=MULTIRUN",) for a in argv):
        from two_grpo.study.sweep import cmd_multirun

        return cmd_multirun([a for a in argv if a not in ("-m", "--multirun", "hydra.mode=MULTIRUN")])
    try:
        cfg = compose(argv)
        if show_plan:  # the per-GPU memory plan from the model config only; nothing is loaded
            from two_grpo.run.memory_plan import make_plan

            print("\n".join(make_plan(to_train_config(cfg)).lines()))
            return 0
        if not cfg.run_id:
            cfg.run_id = f"{cfg.experiment_name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        if _launched_ranks() > 1:  # torchrun / deepspeed launcher: every rank uses rank 0's run id
            from two_grpo.dist.context import init_dist

            cfg.run_id = init_dist().broadcast_object(cfg.run_id)
        if show:
            node = cfg if show == "all" else OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
            print(OmegaConf.to_yaml(node, resolve=True), end="")
        typed = to_train_config(cfg)
        if show:
            return 0
    except ConfigError as exc:
        print(f"two-grpo: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # Hydra / OmegaConf composition errors become one line; anything else is a bug
        if not is_config_exception(exc):
            raise
        print(f"two-grpo: error: {format_config_error(exc, argv)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    run_dir = Path(str(cfg.hydra.run.dir))
    from two_grpo.run.resume import ResumeRefused, resume_decision

    try:
        run_dir, typed, resuming, finished = resume_decision(run_dir, typed)
    except (ResumeRefused, ConfigError) as exc:
        print(f"two-grpo: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if finished:
        print(f"two-grpo: {run_dir} already holds a finished run (summary.json); nothing to do")
        return 0
    extending = resuming and (run_dir / "summary.json").is_file()  # a raised budget on a finished run
    is_main = _launched_ranks() == 1 or _barrier_is_main()  # every rank has checked before rank 0 writes
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_main and extending:
        from two_grpo.run.resume import extension_note

        print(f"two-grpo: {extension_note(run_dir, typed)}")
    if is_main and (not resuming or extending):
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(typed)))
        (run_dir / "overrides.txt").write_text("\n".join(argv) + ("\n" if argv else ""))
    from two_grpo.run.guards import RunStopped
    from two_grpo.run.trainer import train

    try:
        train(typed, run_dir)
    except ConfigError as exc:
        print(f"two-grpo: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunStopped as exc:
        print(f"two-grpo: {'error: ' if exc.exit_code != 3 else ''}{exc}", file=sys.stderr)
        return _leave(exc.exit_code)
    return _leave(0)


def _leave(code: int) -> int:
    """Exit code of a finished `train`; launched ranks leave through `dist.context.leave` (os._exit after the process
    group is torn down)."""
    if _launched_ranks() <= 1:
        return code
    from two_grpo.dist.context import leave

    leave(code)


def _launched_ranks() -> int:
    """WORLD_SIZE from torchrun / the deepspeed launcher (read without importing torch)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _barrier_is_main() -> bool:
    from two_grpo.dist.context import init_dist

    dist = init_dist()
    dist.barrier()
    return dist.is_main


def strip_launcher_args(argv: list[str]) -> list[str]:
    """Drop the `--local_rank=N` the deepspeed launcher passes (LOCAL_RANK is in the environment too)."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg.startswith(("--local_rank=", "--local-rank=")):
            os.environ.setdefault("LOCAL_RANK", arg.split("=", 1)[1])
        elif arg in ("--local_rank", "--local-rank") and i + 1 < len(argv):
            os.environ.setdefault("LOCAL_RANK", argv[i + 1])
            skip = True
        else:
            out.append(arg)
    return out


def cmd_build_model(argv: list[str]) -> int:
    """`two-grpo build-model [task=... task.*=... model.tiny_cache_dir=...]`: build builtin:tiny warm-started on
    the task (any task with gold answers: toy_arith, reasoning_gym); prints the model folder."""
    from two_grpo.config.schema import ConfigError

    try:
        typed = to_train_config(compose(argv))
        from two_grpo.models.tiny_model import ensure_built, recipe_for

        recipe = recipe_for(typed.task)
        if typed.task.name not in ("toy_arith",) and not recipe.task:
            raise ConfigError(f"task={typed.task.name}: no gold-answer generator to warm-start builtin:tiny on")
    except ConfigError as exc:
        print(f"two-grpo: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        if not is_config_exception(exc):
            raise
        print(f"two-grpo: error: {format_config_error(exc, argv)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(ensure_built(typed.model.tiny_cache_dir, recipe=recipe))
    return 0


def cmd_eval(argv: list[str]) -> int:
    from two_grpo.study.eval_cli import cmd_eval as run

    return run(argv)


def cmd_sweep(argv: list[str]) -> int:
    from two_grpo.study.sweep import cmd_sweep as run

    return run(argv)


def cmd_probe(argv: list[str]) -> int:
    from two_grpo.study.probe import cmd_probe as run

    return run(argv)


def cmd_report(argv: list[str]) -> int:
    from two_grpo.study.report import cmd_report as run

    return run(argv)


def cmd_explain(argv: list[str]) -> int:
    """`two-grpo explain KEY` / `two-grpo train --help [KEY]`: one key's type, default, allowed values, meaning."""
    from two_grpo.config.explain import explain, train_help

    if not argv:
        print(train_help())
        return 0
    text, found = explain(argv[0].split("=", 1)[0])
    print(text, file=sys.stdout if found else sys.stderr)
    return 0 if found else EXIT_BAD_INPUT


def cmd_version(argv: list[str]) -> int:
    from importlib.metadata import PackageNotFoundError, version

    from two_grpo import __version__

    try:
        v = version("two-grpo")
    except PackageNotFoundError:
        v = __version__
    print(f"two-grpo {v}")
    return 0


# Hydra's own flags that `two-grpo train` does not pass on (compose API, no app): a one-line refusal each.
HYDRA_FLAGS_REFUSED = {
    "--info": "not supported; `two-grpo train --help` lists the knobs and config groups, `--cfg job` prints the config",
    "--config-dir": "not supported; configs come from two_grpo/conf: put a file in conf/experiment/ and pass "
    "experiment=NAME, or give the keys on the command line",
    "-cd": "not supported (--config-dir); put a file in conf/experiment/ and pass experiment=NAME",
    "--config-path": "not supported; configs come from two_grpo/conf (see `two-grpo train --help`)",
    "-cp": "not supported (--config-path); configs come from two_grpo/conf",
    "--config-name": "not supported; the primary config is conf/train.yaml: use experiment=NAME for a preset",
    "-cn": "not supported (--config-name); use experiment=NAME for a preset",
    "--run": "not needed: `two-grpo train` runs a single job unless -m is given",
    "--shell-completion": "not supported",
}

COMMANDS = {"train": cmd_train, "build-model": cmd_build_model}
COMMANDS.update(
    {"eval": cmd_eval, "sweep": cmd_sweep, "report": cmd_report, "probe": cmd_probe, "explain": cmd_explain}
)


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a pipe closed early fails here, not in the interpreter's teardown
        return code
    except BrokenPipeError:  # `two-grpo train --help | head -1`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None = None) -> int:
    argv = strip_launcher_args(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv and argv[0] in ("--version", "-V"):
        return cmd_version([])
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else EXIT_BAD_INPUT
    if argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"two-grpo: error: unknown command '{argv[0]}'{hint} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return EXIT_BAD_INPUT
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""Bad input: one stderr line naming the key/file/record and the fix, exit code 2, before any model loads.
Also the data gate (schema, duplicates, 8-gram overlap, the MATH-500 warning) and config injection."""

from __future__ import annotations

import json

import pytest

from two_grpo.cli import main
from two_grpo.config.schema import TaskConfig
from two_grpo.data.batch import Prompt
from two_grpo.data.gate import contamination_warning, dedupe, find_overlap, gate_train_set, word_ngrams


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a model's weights are loaded."""

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("two_grpo.run.trainer.load_model", refuse)


def run_main(capsys, argv):
    code = main(["train", *argv, "logger.progress=false"])
    err = capsys.readouterr().err.strip()
    return code, err


def write(path, text: str | bytes):
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


ROW = '{"problem": "What is 1+1?", "answer": "2"}\n'


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda d: write(d / "empty.jsonl", ""), "no records; point it at a non-empty dataset"),
        (lambda d: write(d / "blank.jsonl", "\n\n"), "no records"),
        (
            lambda d: write(d / "bad.jsonl", b'{"problem": "\xff\xfe"}\n'),
            "unreadable (UnicodeDecodeError); check the file",
        ),
        (lambda d: (d / "dir.jsonl").mkdir() or d / "dir.jsonl", "file not found"),
        (lambda d: write(d / "broken.jsonl", ROW + "{not json\n"), "broken.jsonl:2: not valid JSON"),
        (lambda d: write(d / "x.parquet", b"PAR1 not really"), "unreadable parquet file"),
        (lambda d: write(d / "nofield.jsonl", ROW + '{"problem": "2+2"}\n'), "record 2 has no field 'answer'"),
        (
            lambda d: write(d / "emptyans.jsonl", '{"problem": "2+2", "answer": " "}\n'),
            "record 1 has an empty 'answer'",
        ),
        (lambda d: write(d / "list.jsonl", ROW + "[1, 2]\n"), "record 2 is a list, not an object"),
    ],
    ids=[
        "empty",
        "blank",
        "bad-utf8",
        "a-directory",
        "bad-json",
        "bad-parquet",
        "missing-field",
        "empty-answer",
        "not-object",
    ],
)
def test_bad_dataset(tmp_path, capsys, tiny_model_dir, no_model_load, make, needle):
    data = make(tmp_path)
    code, err = run_main(
        capsys,
        [
            "experiment=smoke",
            "task=jsonl",
            f"task.data.path={data}",
            f"model.path={tiny_model_dir}",
            f"hydra.run.dir={tmp_path / 'r'}",
        ],
    )
    assert code == 2 and len(err.splitlines()) == 1, err
    assert needle in err and str(data) in err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["model.path=/nonexistent/model"], "model.path='/nonexistent/model': no config.json there"),
        (
            ["task=jsonl", "task.data.path=/nonexistent/x.jsonl"],
            "task.data.path='/nonexistent/x.jsonl': file not found",
        ),
        (["+model._target_=os.system"], "model._target_"),
        (["resume=/nonexistent/run"], "/nonexistent/run: no config.yaml there"),
        (["checkpoint.every_steps=-1"], "checkpoint.every_steps and checkpoint.keep_last must be >= 0"),
        (["task.max_failed_reward_frac=2"], "task.max_failed_reward_frac=2.0 must be in [0, 1]"),
        (
            ["task.data.overlap=ignore"],
            "task.data.overlap='ignore' is not allowed; choose one of: report, drop, refuse",
        ),
        (["checkpoint.evry_steps=5"], "did you mean 'checkpoint.every_steps'?"),
    ],
)
def test_bad_config_and_paths(tmp_path, capsys, no_model_load, argv, needle):
    code, err = run_main(capsys, ["experiment=smoke", *argv, f"hydra.run.dir={tmp_path / 'r'}"])
    assert code == 2 and len(err.splitlines()) == 1, err
    assert needle in err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["task=jsonl", "task.data.path=/nonexistent/x.jsonl"], "task.data.path='/nonexistent/x.jsonl': file not found"),
        (["eval=local_file", "eval.benchmarks.local.path=/nonexistent/b.parquet"],
         "eval.benchmarks.local.path='/nonexistent/b.parquet': file not found"),
    ],
)  # fmt: skip
def test_a_missing_data_file_fails_before_the_model_is_resolved(tmp_path, capsys, monkeypatch, argv, needle):
    """builtin:tiny (the default model) is built on a machine's first run (~4 min): a missing data file must not
    wait for that."""

    def refuse(*a, **k):
        raise AssertionError("the model was resolved before the data files were checked")

    monkeypatch.setattr("two_grpo.run.trainer.resolve_model_path", refuse)
    code, err = run_main(capsys, ["experiment=smoke", *argv, f"hydra.run.dir={tmp_path / 'r'}"])
    assert code == 2 and len(err.splitlines()) == 1, err
    assert needle in err


def test_pickle_only_model_is_refused_without_opt_in(tmp_path, capsys, no_model_load):
    model = tmp_path / "m"
    model.mkdir()
    write(model / "config.json", "{}")
    write(model / "pytorch_model.bin", b"\x80\x04not loaded")
    code, err = run_main(capsys, ["experiment=smoke", f"model.path={model}", f"hydra.run.dir={tmp_path / 'r'}"])
    assert code == 2 and len(err.splitlines()) == 1
    assert "no *.safetensors weights there" in err and "model.allow_pickle=true" in err


def test_trust_remote_code_is_logged_loudly(tiny_model_dir, capsys):
    from two_grpo.config.schema import ModelConfig
    from two_grpo.models.loading import load_model

    load_model(str(tiny_model_dir), ModelConfig(trust_remote_code=True))
    assert "model.trust_remote_code=true runs Python code" in capsys.readouterr().err
    load_model(str(tiny_model_dir), ModelConfig())
    assert "trust_remote_code" not in capsys.readouterr().err


def test_overlap_refuse_and_drop_through_the_cli(tmp_path, capsys, tiny_model_dir, no_model_load):
    q = "Find the number of ordered pairs of positive integers whose product is one hundred"
    train = write(tmp_path / "train.jsonl", json.dumps({"problem": q + " exactly.", "answer": "9"}) + "\n" + ROW)
    test = write(tmp_path / "test.jsonl", json.dumps({"problem": q + "?", "answer": "9"}) + "\n")
    base = [
        "experiment=smoke",
        "task=jsonl",
        f"task.data.path={train}",
        f"task.data.eval_path={test}",
        f"model.path={tiny_model_dir}",
    ]
    code, err = run_main(capsys, [*base, "task.data.overlap=refuse", f"hydra.run.dir={tmp_path / 'a'}"])
    assert code == 2 and "1 training prompts overlap the eval set (word 8-grams, first: training prompt 0)" in err


# ---- the data gate's parts -----------------------------------------------------------------------------------


def test_word_ngrams_and_overlap_by_hand():
    assert word_ngrams("a b c", 8) == {"a b c"}  # shorter than 8 words: the whole text
    grams = word_ngrams("One two three four five six seven eight NINE", 8)
    assert grams == {"one two three four five six seven eight", "two three four five six seven eight nine"}
    train = [
        "one  two three four five six seven eight nine ten",  # shares "two ... nine" with bench[0]
        "completely different words in this training prompt here now",
        "Short one",  # equal to bench[1] after normalisation
    ]
    bench = ["zero two three four five six seven eight nine", "short ONE"]
    assert find_overlap(train, bench) == [0, 2]


def test_dedupe_counts_and_renumbers():
    prompts = [Prompt(i, t, "1", t) for i, t in enumerate(["A  b", "c", "a b", "C", "d"])]
    kept, removed = dedupe(prompts)
    assert (
        removed == 2 and [p.question for p in kept] == ["A  b", "c", "d"] and [p.prompt_id for p in kept] == [0, 1, 2]
    )


def test_gate_modes(capsys):
    long_q = "how many ways can eight rooks be placed on a chess board"
    train = [Prompt(0, long_q, "1", long_q), Prompt(1, "x", "2", "x"), Prompt(2, "x", "2", "x")]
    bench = [Prompt(0, long_q.upper(), "1", long_q.upper())]
    cfg = TaskConfig()
    kept, report = gate_train_set(cfg, train, bench)
    assert len(kept) == 2 and (report.duplicates_removed, report.overlapping, report.dropped) == (1, 1, 0)
    assert "2 training prompts; 1 duplicates removed; 1 overlap the eval set" in capsys.readouterr().out
    cfg.data.overlap = "drop"
    kept, report = gate_train_set(cfg, train, bench)
    assert [p.question for p in kept] == ["x"] and kept[0].prompt_id == 0 and report.dropped == 1


def test_math_test_split_warns_about_math500(capsys):
    cfg = TaskConfig(name="math")
    cfg.data.path, cfg.data.split = "DigitalLearningGmbH/MATH-lighteval", "train"
    assert contamination_warning(cfg) is None
    cfg.data.split = "test"
    assert "MATH-500 is drawn from MATH's test split" in contamination_warning(cfg)
    gate_train_set(cfg, [Prompt(0, "q", "1", "q")], [])
    assert "MATH-500 is drawn from MATH's test split" in capsys.readouterr().err
    cfg.data.path = "HuggingFaceH4/MATH-500"  # evaluating on MATH-500 itself is not training on the test split
    assert contamination_warning(cfg) is None

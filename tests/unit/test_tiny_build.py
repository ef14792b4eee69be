"""builtin:tiny's build is safe when processes race to build it (sweep members side by side, test workers): a
complete build already in place is kept, never deleted under the process reading it."""

from __future__ import annotations

from two_grpo.models.tiny_model import TinyRecipe, build


def test_a_second_build_keeps_the_complete_one_in_place(tmp_path):
    out = tmp_path / "tiny"
    recipe = TinyRecipe(sft_steps=1)
    assert build(out, recipe) == out and (out / "two_grpo_recipe.json").exists()
    in_use = out / "reader-holds-this"  # stands for a reader of the first build (e.g. an open weight file)
    in_use.write_text("x")
    weights = sorted(p.name for p in out.iterdir())
    assert build(out, recipe) == out  # the racing build finishes second
    assert in_use.exists(), "the second build deleted the complete first build under its reader"
    assert sorted(p.name for p in out.iterdir()) == weights
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # its own temporary copy is gone


def test_a_partial_directory_is_replaced(tmp_path):
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "half-written.bin").write_text("")  # no two_grpo_recipe.json: an interrupted build
    build(out, TinyRecipe(sft_steps=1))
    assert (out / "two_grpo_recipe.json").exists() and not (out / "half-written.bin").exists()


def test_a_racing_process_waits_for_the_build_instead_of_repeating_it(tmp_path, monkeypatch, capsys):
    """Sweep members and test workers that start together build builtin:tiny once: the first holds `<out>.lock`,
    the others wait for it and load its build."""
    import threading
    import time

    from filelock import FileLock

    from two_grpo.models import tiny_model

    recipe = TinyRecipe(sft_steps=1)
    out = tmp_path / f"tiny-{recipe.task_name()}-{recipe.key()}"
    builds = []
    monkeypatch.setattr(tiny_model, "build", lambda o, r, progress=None: builds.append(o) or o)
    holder = FileLock(f"{out}.lock")  # another process's build in progress
    holder.acquire()
    got = {}
    waiter = threading.Thread(target=lambda: got.setdefault("out", tiny_model.ensure_built(str(tmp_path), recipe)))
    waiter.start()
    seen = ""
    for _ in range(200):  # up to 10 s for the waiter to report that it waits
        seen += capsys.readouterr().out
        if "waiting for another process" in seen:
            break
        time.sleep(0.05)
    assert "waiting for another process to finish building builtin:tiny" in seen
    assert waiter.is_alive() and not builds  # blocked on the lock, not building
    out.mkdir(parents=True)
    (out / "two_grpo_recipe.json").write_text("{}")  # the other build completes
    holder.release()
    waiter.join(10)
    assert got["out"] == out and builds == []  # it took the finished build


def test_a_lone_process_builds_once_and_releases_the_lock(tmp_path, monkeypatch):
    from filelock import FileLock

    from two_grpo.models import tiny_model

    recipe = TinyRecipe(sft_steps=1)
    builds = []
    monkeypatch.setattr(tiny_model, "build", lambda o, r, progress=None: builds.append(o) or o)
    out = tiny_model.ensure_built(str(tmp_path), recipe, quiet=True)
    assert builds == [out]
    FileLock(f"{out}.lock").acquire(timeout=0)  # released: a later process does not wait

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

"""Save the trained policy as a loadable model folder: `run_dir/final/` (safetensors + config + tokenizer).

`two-grpo eval <run_dir>` and `model.path=<run_dir>/final` read it back. Checkpoints for resuming are a
separate concern (run_dir/checkpoints/); this folder holds only the final weights (with LoRA: the merged model,
and the adapter alone in final/adapter/).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

FINAL_DIR = "final"
EXTRA_FILES = ("two_grpo_recipe.json",)  # builtin:tiny's tokenizer marker, read by models.load_tokenizer


def save_final(
    weights: dict[str, Any], model: Any, tokenizer: Any, source_path: str, run_dir: Path, write: bool = True
) -> Path:
    """Write `weights` (the learner's, name -> tensor; see trainer.final_weights) with `model`'s config, and the
    tokenizer, into run_dir/final atomically (a .tmp folder renamed at the end). `write=False` on ranks > 0."""
    final, tmp = run_dir / FINAL_DIR, run_dir / f".{FINAL_DIR}.tmp"
    if not write:
        return final
    shutil.rmtree(tmp, ignore_errors=True)
    from two_grpo.lora import is_lora, save_adapter
    from two_grpo.models import save_quietly

    if is_lora(model):  # `weights` are merged (base + B·A); the adapter goes next to them, in peft's format
        save_quietly(model.get_base_model(), tmp, state_dict=weights)
        save_adapter(model, tmp / "adapter")
    else:
        save_quietly(model, tmp, state_dict=weights)
    tokenizer.save_pretrained(tmp)
    for name in EXTRA_FILES:
        src = Path(source_path) / name
        if src.is_file():
            shutil.copy2(src, tmp / name)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final

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


def save_quietly(model: Any, folder: Any, **kwargs: Any) -> None:
    """`model.save_pretrained(folder, safetensors)` without transformers' "Writing model shards" progress bar on
    stderr (our errors and summaries are one-line, so a stray bar would break them), nor DeepSpeed's
    "Setting accelerator to CPU" WARNING on stdout (save_pretrained imports deepspeed when it is installed)."""
    from transformers.utils import logging as hf_logging

    from two_grpo.run.engine_log import quiet_deepspeed_accelerator_warning

    quiet_deepspeed_accelerator_warning()

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder, safe_serialization=True, **kwargs)
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def save_final(
    weights: dict[str, Any], model: Any, tokenizer: Any, source_path: str, run_dir: Path, write: bool = True
) -> Path:
    """Write `weights` (the learner's, name -> tensor; see final_weights) with `model`'s config, and the
    tokenizer, into run_dir/final atomically (a .tmp folder renamed at the end). `write=False` on ranks > 0."""
    final, tmp = run_dir / FINAL_DIR, run_dir / f".{FINAL_DIR}.tmp"
    if not write:
        return final
    shutil.rmtree(tmp, ignore_errors=True)
    from two_grpo.models.lora import is_lora, save_adapter

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


def final_weights(learner: Any, dist: Any) -> dict[str, Any]:
    """The learner's full weights on rank 0 (CPU copies), {} elsewhere. Collective under ZeRO-3 (each
    parameter is gathered while it is copied)."""
    return {n: t.detach().to("cpu", copy=True) for n, t in learner.named_weights() if dist.is_main}

"""`learner.compile=true`: torch.compile of the decoder layers (regional compilation: every layer shares one
compiled graph, forward and backward through AOTAutograd), with a persistent inductor cache in the project cache so
that runs and sweep members on one machine pay the compile once. The model's embedding, mask building, the output
head and the loss stay eager. Micro-batch lengths are padded up to `learner.compile_pad_multiple`
(learner/step.py) so a run meets few distinct shapes; past the first recompile torch marks the sizes dynamic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def inductor_cache_dir() -> Path:
    """$TORCHINDUCTOR_CACHE_DIR when set, else <project cache>/inductor ($TWO_GRPO_CACHE or ~/.cache/two_grpo)."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    from two_grpo.models.tiny_model import default_cache_dir

    return default_cache_dir() / "inductor"


class CompiledLayers:
    """Compiled versions of each decoder layer of `model`, switched on only inside `with compiled:` (the learner's
    passes), so an HF engine sharing the module samples through the eager layers (no decode-shape compiles).

    Sets TORCHINDUCTOR_CACHE_DIR (and the FX-graph and autograd caches on) first unless the user set them. Raises
    ValueError for a model without a `layers` list in its decoder (get_decoder().layers: Qwen2, Llama, Mistral)."""

    def __init__(self, model: Any):
        import torch

        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache_dir()))
        os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
        os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
        inner = getattr(model, "module", model)
        body = inner.get_decoder() if hasattr(inner, "get_decoder") else None
        layers = getattr(body, "layers", None)
        if layers is None:
            raise ValueError(
                f"learner.compile=true: {type(inner).__name__} has no decoder `layers` to compile; "
                "set learner.compile=false"
            )
        self.layers = list(layers)
        # what nn.Module.compile() installs, kept aside: torch.compile of the module's own __call__ (hooks included)
        self.fns = [torch.compile(layer._call_impl) for layer in self.layers]

    def __len__(self) -> int:
        return len(self.layers)

    def __enter__(self) -> CompiledLayers:
        for layer, fn in zip(self.layers, self.fns):
            layer._compiled_call_impl = fn  # nn.Module.__call__ runs this instead of _call_impl when set
        return self

    def __exit__(self, *exc: Any) -> None:
        for layer in self.layers:
            layer._compiled_call_impl = None


def adamw(params: list, lr: float, cfg: Any):
    """torch AdamW with the kernel `cfg.adamw_impl` names: default (torch's choice), for_loop, foreach, fused."""
    import torch

    impl = {"default": {}, "for_loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    return torch.optim.AdamW(
        params, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, weight_decay=cfg.weight_decay,
        **impl[cfg.adamw_impl],
    )  # fmt: skip

"""LoRA adapters through `peft` (the `lora` extra): only the adapter trains, the base weights stay frozen.

`apply_lora(model, cfg)` wraps the HF model in a PeftModel (model.lora.r > 0). The learner then optimizes the
adapter only (`adapter_state` / `load_adapter_state` are its checkpoint), the HF engine samples through the
PeftModel itself, and an engine with its own copy (vLLM) or `final/` receives `merged_weights`: base + (alpha/r)·B·A
computed per layer on the fly, under the base model's own parameter names; the learner's module is never merged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from two_grpo.config.schema import ConfigError, LoraConfig
from two_grpo.models import fmt_params

ADAPTER_FILE = "adapter.safetensors"


def is_lora(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def apply_lora(model: Any, cfg: LoraConfig) -> Any:
    """-> `model` itself when cfg.r == 0, else a PeftModel whose only trainable parameters are the adapter's."""
    if cfg.r <= 0:
        return model
    try:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model
    except ImportError as exc:
        raise ConfigError("model.lora.r > 0 needs peft: pip install 'two-grpo[lora]' (or set model.lora.r=0)") from exc
    targets: Any = list(cfg.target_modules)
    if targets == ["all-linear"]:
        targets = "all-linear"
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in (targets if isinstance(targets, list) else []) if t not in names]
    if missing:
        raise ConfigError(
            f"model.lora.target_modules: {missing} are not modules of this model; e.g. q_proj, v_proj or all-linear"
        )
    peft_cfg = PeftLoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets, bias="none"
    )
    return get_peft_model(model, peft_cfg)


def _lora_layers(model: Any) -> dict[str, Any]:
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def _base_name(peft_name: str) -> str:
    """`base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight` -> `model.layers.0.self_attn.q_proj.weight`."""
    return peft_name.removeprefix("base_model.model.").replace(".base_layer.", ".")


@torch.no_grad()
def merged_weights(model: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """(base-model name, tensor) of every base parameter; an adapted layer's weight is base + delta (a new tensor,
    one layer at a time), the others are the live parameters. The adapter tensors themselves are not yielded."""
    layers = _lora_layers(model)
    for name, param in model.named_parameters():
        if ".lora_" in name:
            continue
        owner, _, leaf = name.rpartition(".")
        owner = owner.removesuffix(".base_layer")
        layer = layers.get(owner)
        if layer is not None and leaf == "weight" and name.endswith("base_layer.weight"):
            delta = sum(layer.get_delta_weight(a) for a in layer.active_adapters if a in layer.lora_A)
            yield _base_name(name), param + delta
        else:
            yield _base_name(name), param


def adapter_state(model: Any) -> dict[str, torch.Tensor]:
    """The trainable (adapter) parameters, name -> CPU copy: what a checkpoint holds."""
    return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_adapter_state(model: Any, folder: Path) -> None:
    from safetensors.torch import save_file

    save_file(adapter_state(model), str(folder / ADAPTER_FILE))


@torch.no_grad()
def load_adapter_state(model: Any, folder: Path) -> None:
    """Copy a checkpoint's adapter into `model` in place; the names must match exactly (same r / targets)."""
    from safetensors.torch import load_file

    saved = load_file(str(folder / ADAPTER_FILE))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if saved.keys() != params.keys():
        raise ConfigError(f"{folder / ADAPTER_FILE}: its adapter does not match model.lora (r / target_modules)")
    for name, tensor in saved.items():
        params[name].copy_(tensor)


class AdapterOff(torch.nn.Module):
    """The base model as a frozen reference policy (KL term) without a copy: calls run with the adapter disabled."""

    def __init__(self, model: Any):
        super().__init__()
        self.peft = [model]  # a list: not registered as a submodule (no second copy in state_dict / .to())

    def get_decoder(self) -> Any:  # the learner's response-only head path (learner/step.py) works through it
        return self.peft[0].get_decoder()

    def get_output_embeddings(self) -> Any:
        return self.peft[0].get_output_embeddings()

    def get_base_model(self) -> Any:
        return self.peft[0].get_base_model()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        model = self.peft[0]
        was_training = model.training
        model.eval()
        try:
            with model.disable_adapter():
                return model(*args, **kwargs)
        finally:
            model.train(was_training)


def save_adapter(model: Any, folder: Path) -> None:
    """peft's own adapter folder (adapter_config.json + adapter_model.safetensors), loadable with PeftModel."""
    model.save_pretrained(str(folder))


def trainable_summary(model: Any) -> str:
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    return (
        f"LoRA: {fmt_params(n_train)} trainable parameters of {fmt_params(n_all)} "
        f"({100 * n_train / max(n_all, 1):.2f}%)"
    )

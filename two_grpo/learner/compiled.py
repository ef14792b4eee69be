"""`learner.compile`: torch.compile for the torch learner, with a persistent inductor cache in the project cache so
that runs and sweep members on one machine pay the compile once.

- `layers` (or `true`): each decoder layer (regional compilation: every layer shares one compiled graph, forward
  and backward through AOTAutograd). The embedding, mask building, the output head and the loss stay eager.
- `full`: the whole map from a micro-batch to its loss (model forward, log-probs over every position, the policy
  loss) as one graph, its backward through AOTAutograd, so inductor fuses the elementwise work between the matmuls
  too. The module itself is not compiled: an HF engine sharing it samples eagerly (no decode-shape compiles).

Micro-batch lengths are padded up to `learner.compile_pad_multiple` so a run meets few distinct shapes; `layers`
compiles with dynamic sizes from the start (one graph per pass kind, training and no-grad), and traces
learner.segment_attention's gather and scatter into each layer's graph (no graph break). `full` marks the row, length and packed-sequence counts
dynamic before its first compile (and never packs into a single sequence: torch specialises a size of 1), so a
run compiles each graph once, or twice if a micro-batch's R x L slots cross 4096 (inductor's CPU codegen then
switches to a chunked, more precise float sum and guards on that size). `full` with `learner.padding_free`: the
rows are packed (eagerly, outside the graph) first-fit into sequences of a fixed `learner.pack_tokens` width, so
the linear layers run on ~no padding at one input width; the graph gathers the logits back to the padded [R, L]
layout.
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


def use_project_cache() -> None:
    """TORCHINDUCTOR_CACHE_DIR = inductor_cache_dir() and the FX-graph and autograd caches on, unless the user set
    them."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache_dir()))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")


class CompiledLayers:
    """Compiled versions of each decoder layer of `model`, switched on only inside `with compiled:` (the learner's
    passes), so an HF engine sharing the module samples through the eager layers (no decode-shape compiles).

    Sets TORCHINDUCTOR_CACHE_DIR (and the FX-graph and autograd caches on) first unless the user set them. Raises
    ValueError for a model without a `layers` list in its decoder (get_decoder().layers: Qwen2, Llama, Mistral)."""

    def __init__(self, model: Any):
        import torch

        use_project_cache()
        inner = getattr(model, "module", model)
        body = inner.get_decoder() if hasattr(inner, "get_decoder") else None
        layers = getattr(body, "layers", None)
        if layers is None:
            raise ValueError(
                f"learner.compile=true: {type(inner).__name__} has no decoder `layers` to compile; "
                "set learner.compile=false"
            )
        self.layers = list(layers)
        # what nn.Module.compile() installs, kept aside: torch.compile of the module's own __call__ (hooks included);
        # dynamic sizes from the first compile: packed lengths and segment shapes change every step, so a static
        # first graph was always compiled again (measured +14 s cold on the 3.2M model)
        self.fns = [torch.compile(layer._call_impl, dynamic=True) for layer in self.layers]

    def __len__(self) -> int:
        return len(self.layers)

    def __enter__(self) -> CompiledLayers:
        for layer, fn in zip(self.layers, self.fns):
            layer._compiled_call_impl = fn  # nn.Module.__call__ runs this instead of _call_impl when set
        return self

    def __exit__(self, *exc: Any) -> None:
        for layer in self.layers:
            layer._compiled_call_impl = None


NORMALISED_METRICS = ("loss/policy", "loss/kl")  # policy_loss divides these by the mini-batch normaliser


def pad_micro(micro: Any, multiple: int) -> Any:
    """A TrainBatch [R, L] padded on the right to [R, L'] (L' the next multiple of `multiple`), its [R, L-1] fields to
    [R, L'-1], with zeros: the new positions are masked out (attention 0, loss 0), so loss and gradients are the
    same."""
    import dataclasses

    import torch.nn.functional as F

    extra = -micro.input_ids.shape[1] % multiple
    if not extra:
        return micro
    pad = {f.name: getattr(micro, f.name) for f in dataclasses.fields(micro)}
    for name in ("input_ids", "attention_mask", "loss_mask", "old_logp", "ref_logp", "behav_logp"):
        if pad[name] is not None:
            pad[name] = F.pad(pad[name], (0, extra))
    return type(micro)(**pad)


class CompiledLoss:
    """`learner.compile=full`: compiled (loss, metrics) of a micro-batch and no-grad log-probs, each one graph.

    The graph is learner/step.py's own micro_batch_loss / forward_logprobs with the head over every position
    (chunk_tokens=-1: no data-dependent gather of the response positions) and a unit normaliser; the mini-batch
    normaliser is applied outside (the loss is linear in it), so a new token count does not recompile.
    `algo.loss=pairwise` (a data-dependent branch) runs eagerly. `pack_tokens` > 0: padding-free, rows packed into
    sequences of that width before the graph (learner/packing.py; `shared_prefix`: around one copy of each prompt,
    learner/prefix_sharing.py); None: the padded layout."""

    def __init__(
        self,
        algo: Any,
        temperature: float,
        pad_multiple: int,
        dynamic: bool | None = None,
        pack_tokens: int | None = None,
        shared_prefix: bool = False,
    ):
        import torch

        from two_grpo.learner.step import forward_logprobs, micro_batch_loss

        use_project_cache()
        self.algo, self.temperature, self.pad_multiple, self.pack_tokens = algo, temperature, pad_multiple, pack_tokens
        self.dynamic, self.shared_prefix = dynamic, shared_prefix

        def loss_fn(model: Any, micro: Any, packed: Any) -> tuple[Any, dict[str, Any]]:
            return micro_batch_loss(model, micro, algo, temperature, 1.0, 1.0, -1, layout=packed)

        def logprob_fn(model: Any, micro: Any, packed: Any) -> Any:
            logp = forward_logprobs(model, micro, temperature, chunk_tokens=-1, layout=packed)[0]
            return logp * micro.loss_mask  # 0 off responses

        self.eager_loss = micro_batch_loss
        self._loss = torch.compile(loss_fn, fullgraph=True, dynamic=dynamic)
        self._logprobs = torch.compile(logprob_fn, fullgraph=True, dynamic=dynamic)

    def loss(self, model: Any, micro: Any, minibatch_tokens: float, minibatch_seqs: float):
        """micro_batch_loss(model, micro, ...) to fp32 rounding: (scalar loss, metric tensors)."""
        if self.algo.loss == "pairwise":
            return self.eager_loss(model, micro, self.algo, self.temperature, minibatch_tokens, minibatch_seqs)
        micro = pad_micro(micro, self.pad_multiple)
        packed = self._pack(micro)
        self._mark_dynamic(micro, packed)
        loss, metrics = self._loss(model, micro, packed)
        norm = minibatch_tokens if self.algo.loss_agg == "token_mean" else minibatch_seqs
        scale = 1.0 / max(norm, 1.0)
        metrics = {k: v * scale if k in NORMALISED_METRICS else v for k, v in metrics.items()}
        return loss * scale, metrics

    def logprobs(self, model: Any, micro: Any):
        """[R, L-1] log-probs of the micro-batch's tokens (0 off the response positions), as forward_logprobs."""
        padded = pad_micro(micro, self.pad_multiple)
        packed = self._pack(padded)
        self._mark_dynamic(padded, packed)
        logp = self._logprobs(model, padded, packed)
        return logp[:, : micro.loss_mask.shape[1]]

    def _mark_dynamic(self, micro: Any, packed: Any) -> None:
        """With `dynamic=None` (the default): the micro-batch's rows and length, and the packed layout's sequence
        count, as dynamic sizes from the first compile on, so a new row count, length bucket or number of packed
        sequences reuses the graph instead of compiling it twice more (static, then dynamic: measured 16-18 s
        each on the default run). The packed width stays static (it is fixed)."""
        if self.dynamic is not None:
            return
        import dataclasses

        import torch

        for f in dataclasses.fields(micro):
            t = getattr(micro, f.name)
            if isinstance(t, torch.Tensor) and t.dim() >= 1:
                for dim in range(min(t.dim(), 2)):
                    torch._dynamo.maybe_mark_dynamic(t, dim)
        if packed is not None:
            for t in (packed.input_ids, packed.position_ids, packed.row_seq, packed.row_offset):
                torch._dynamo.maybe_mark_dynamic(t, 0)
            for t in (packed.shared_len, packed.prefix_offset, packed.attn_mask):
                if t is not None:
                    torch._dynamo.maybe_mark_dynamic(t, 0)

    def _pack(self, micro: Any) -> Any:
        """The micro-batch's packed layout (rows first-fit into `pack_tokens`-wide sequences, at least two), or None
        (padded)."""
        if self.pack_tokens is None:
            return None
        import dataclasses

        import torch

        from two_grpo.learner.packing import pack

        if self.shared_prefix:
            from two_grpo.learner.prefix_sharing import pack_shared

            width = self.pack_tokens
            return pack_shared(
                micro.input_ids, micro.attention_mask, micro.loss_mask, width, multiple=width, min_sequences=2
            )
        packed = pack(micro.input_ids, micro.attention_mask, self.pack_tokens, multiple=self.pack_tokens)
        if packed.input_ids.shape[0] == 1:  # one more (unused) padding sequence: torch specialises a size of 1
            pad_ids = torch.zeros_like(packed.input_ids)
            pad_pos = torch.arange(packed.input_ids.shape[1], device=pad_ids.device)[None]
            packed = dataclasses.replace(
                packed,
                input_ids=torch.cat([packed.input_ids, pad_ids]),
                position_ids=torch.cat([packed.position_ids, pad_pos]),
            )
        return packed


def adamw(params: list, lr: float, cfg: Any, impl_name: str = ""):
    """torch AdamW with the kernel `impl_name` or else `cfg.adamw_impl` names: for_loop, foreach, fused, or default:
    the fused kernel where torch has one for the parameters' device (CPU, CUDA; the HF Trainer's own default,
    `adamw_torch_fused`; measured 1.30 vs 4.23 ms per step for builtin:tiny's for-loop default), else torch's
    choice. Every kernel makes the same update to fp32 rounding."""
    import torch

    impl = {"default": {}, "for_loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    name = impl_name or cfg.adamw_impl
    if name == "default" and params and all(p.device.type in ("cpu", "cuda") for p in params):
        name = "fused"
    return torch.optim.AdamW(
        params, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, weight_decay=cfg.weight_decay,
        **impl[name],
    )  # fmt: skip

"""Single-process learner: AdamW, linear warm-up then constant lr, global grad-norm clipping.

A mini-batch is split into micro-batches of `micro_rollouts` rows; each micro-batch loss is already divided
by the mini-batch normaliser, so gradients simply accumulate. A non-finite loss or grad norm skips the update.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from two_grpo.config.schema import AlgoConfig, LearnerConfig
from two_grpo.data.batch import TrainBatch
from two_grpo.learner.device import batch_to
from two_grpo.learner.micro import micro_batches
from two_grpo.learner.packing import Layout
from two_grpo.learner.step import accumulate, forward_logprobs, micro_batch_loss, summarize

COMPILED_PACK_TOKENS = 128  # learner.compile=full's packed width when learner.pack_tokens=0


class TorchLearner:
    def __init__(
        self,
        model: Any,
        cfg: LearnerConfig,
        lr: float,
        algo: AlgoConfig,
        temperature: float,
        device: torch.device | str = "cpu",
        noise: Any = None,
    ):
        """`device`: where the model, its reference copy and every micro-batch live (`dist.device`: the GPU of
        this rank when CUDA is available). The model is moved in place, so an engine sharing it follows.
        `noise`: a DiagnosticsConfig with grad_noise on and grad_noise_sets >= 2, or None (nothing measured)."""
        self.device = torch.device(device)
        model.to(self.device)
        from two_grpo.models import lora

        self.model, self.cfg, self.algo, self.temperature = model, cfg, algo, temperature
        self.lora = lora.is_lora(model)  # a peft LoRA model: only the adapter trains, checkpoints hold it alone
        # a pair's two rows share a micro-batch (algo.loss=pairwise); a group's rows share its prompt copy
        self.whole_groups = algo.loss == "pairwise" or (cfg.padding_free and cfg.shared_prefix)
        self.noise = None
        if noise is not None and noise.grad_noise and noise.grad_noise_sets >= 2:
            from two_grpo.learner.grad_noise_probe import GradNoiseProbe

            self.noise = GradNoiseProbe(noise.grad_noise_sets, noise.grad_noise_dims, noise.grad_noise_seed, algo)
        self.params = [p for p in model.parameters() if p.requires_grad]
        from two_grpo.config.schema import compile_mode, shares_prompts
        from two_grpo.learner.compiled import CompiledLayers, CompiledLoss, adamw

        mode = compile_mode(cfg.compile)
        self.optimizer = adamw(self.params, lr, cfg)  # default: the fused kernel on CPU and CUDA
        # learner/step.py's layout: padding-free packing (around shared prompts), lengths padded for compiled layers
        self.layout = Layout(
            pack_tokens=cfg.pack_tokens if cfg.padding_free else None,
            pad_multiple=cfg.compile_pad_multiple if mode == "layers" else 1,
            shared_prefix=shares_prompts(cfg),
            segment_attention=cfg.padding_free and cfg.segment_attention,
        )
        # compiled decoder layers, active only inside the learner's passes (an engine sharing the model stays eager)
        self.compiled = CompiledLayers(model) if mode == "layers" else contextlib.nullcontext()
        # compile=full: the whole micro-batch loss (and the no-grad log-probs) as one compiled graph each
        # compile=full + padding_free: packing to one fixed width (pack_tokens=0: COMPILED_PACK_TOKENS)
        width = (cfg.pack_tokens or COMPILED_PACK_TOKENS) if cfg.padding_free else None
        self.full = (
            CompiledLoss(
                algo, temperature, cfg.compile_pad_multiple, pack_tokens=width, shared_prefix=shares_prompts(cfg)
            )
            if mode == "full"
            else None
        )
        warmup = max(cfg.warmup_steps, 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.skipped_updates = 0
        self.ref_model = None
        if algo.kl_coef > 0 and self.lora:  # the initial policy is the base model: the adapter switched off
            self.ref_model = lora.AdapterOff(model)
        elif algo.kl_coef > 0:  # frozen copy of the initial policy for the KL term
            import copy

            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        if cfg.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()

    def logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """[R, L-1] log-probs of the batch's tokens under the current weights (no grad)."""
        return self._logprobs(self.model, batch)

    def ref_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """[R, L-1] log-probs under the frozen reference (initial) policy."""
        assert self.ref_model is not None, "ref_logprobs needs algo.kl_coef > 0"
        return self._logprobs(self.ref_model, batch)

    @torch.no_grad()
    def _logprobs(self, model: Any, batch: TrainBatch) -> torch.Tensor:
        with self.compiled:
            return self._logprobs_eager(model, batch)

    def _logprobs_eager(self, model: Any, batch: TrainBatch) -> torch.Tensor:
        out = torch.zeros_like(batch.loss_mask)
        for idx, micro in self._micro_batches(batch):
            if self.full is not None and (model is self.model or not self.lora):  # LoRA's AdapterOff: eager
                logp = self.full.logprobs(model, self._to_device(micro))
                out[idx, : logp.shape[1]] = logp.float().to(out.device)
                continue
            logp, _ = forward_logprobs(
                model, self._to_device(micro), self.temperature, chunk_tokens=self.cfg.logits_chunk_tokens,
                layout=self.layout,
            )  # fmt: skip
            out[idx, : logp.shape[1]] = logp.float().to(out.device)
        return out

    def _micro_batches(self, batch: TrainBatch) -> list[tuple[torch.Tensor, TrainBatch]]:
        c = self.cfg
        return micro_batches(batch, c.micro_rollouts, c.sort_by_length, c.micro_tokens, self.whole_groups)

    def noise_reference(self, batch: TrainBatch) -> None:
        """Sketch the loss gradient of `batch` (its own normaliser) as the grad-noise reference of the next step;
        parameters and optimizer state are untouched and the gradients are cleared again."""
        assert self.noise is not None, "noise_reference needs diagnostics.grad_noise with grad_noise_sets >= 2"
        self.optimizer.zero_grad(set_to_none=True)
        for _, micro in self._micro_batches(batch):
            self._backward(micro, batch.n_tokens, float(len(batch)))
        self.noise.set_reference(self.params)
        self.optimizer.zero_grad(set_to_none=True)

    def _backward(self, micro: TrainBatch, n_tok: float, n_seq: float) -> dict[str, torch.Tensor]:
        """Loss of one micro-batch (normalised by its mini-batch's `n_tok` tokens / `n_seq` rows), backward into
        the accumulated gradients; returns its metrics."""
        if self.full is not None:
            loss, metrics = self.full.loss(self.model, self._to_device(micro), n_tok, n_seq)
            loss.backward()
            return metrics
        with self.compiled:
            loss, metrics = micro_batch_loss(
                self.model, self._to_device(micro), self.algo, self.temperature, n_tok, n_seq,
                self.cfg.logits_chunk_tokens, layout=self.layout,
            )  # fmt: skip
            loss.backward()
        return metrics

    def train_minibatch(self, mb: TrainBatch) -> dict[str, float]:
        """One optimizer step on mini-batch `mb`; returns loss/optim metrics."""
        n_tok, n_seq = mb.n_tokens, float(len(mb))
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        sets = self.noise.sets(mb) if self.noise is not None else [mb]  # disjoint sets of whole groups
        for part in sets:
            for _, micro in self._micro_batches(part):
                accumulate(sums, self._backward(micro, n_tok, n_seq))
            if self.noise is not None:
                self.noise.after_set(part, self.params, n_tok, n_seq)
        noise_metrics = self.noise.finish() if self.noise is not None else {}
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        lr = self.scheduler.get_last_lr()[0]
        skipped = not (math.isfinite(grad_norm) and math.isfinite(sums.get("loss/policy", 0.0)))
        if skipped:
            self.skipped_updates += 1
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.step()
        self.scheduler.step()
        out = summarize(sums, n_tok)
        out.update({"optim/grad_norm": grad_norm, "optim/lr": lr, "optim/skipped": float(skipped)})
        out["loss/clip_frac"] = out.get("loss/clip_frac_low", 0.0) + out.get("loss/clip_frac_high", 0.0)
        out.update(noise_metrics)
        return out

    def _to_device(self, b: TrainBatch) -> TrainBatch:
        """Every field of `b` on the learner's device."""
        return batch_to(b, self.device)

    def save_state(self, folder: Path) -> None:
        """Model weights (model.safetensors; with LoRA the adapter alone, adapter.safetensors), optimizer and
        lr-schedule state into `folder` (exists)."""
        from safetensors.torch import save_model

        from two_grpo.models import lora

        if self.lora:
            lora.save_adapter_state(self.model, folder)
        else:
            save_model(self.model, str(folder / "model.safetensors"))
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")

    def load_state(self, folder: Path) -> None:
        """Inverse of save_state: weights in place (an engine sharing the module sees them), optimizer, schedule."""
        from safetensors.torch import load_model

        from two_grpo.models import lora

        if self.lora:
            lora.load_adapter_state(self.model, folder)
        else:
            load_model(self.model, str(folder / "model.safetensors"), strict=True)
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) of every parameter, for pushing into a rollout engine (LoRA: base + B·A per layer, under the
        base model's names; the learner's own module is not merged)."""
        if self.lora:
            from two_grpo.models import lora

            yield from lora.merged_weights(self.model)
        else:
            yield from self.model.named_parameters()

"""DeepSpeed ZeRO learner (stage 1/2/3, optional CPU offload) with the TorchLearner interface.

Every rank holds its own slice of the mini-batch (whole groups). The loss normaliser is the GLOBAL one
(token and sequence counts all-reduced before the first micro-batch), so each rank's micro-batch losses are
its share of the global mini-batch loss; their gradients must be SUMMED over ranks, while DeepSpeed averages
them, hence `backward(loss * world_size, scale_wrt_gas=False)` (no division by the accumulation steps:
our losses are already per-mini-batch). The accumulation boundary is set explicitly on the last micro-batch.

Collectives in ZeRO (gradient reduce-scatter every backward, parameter all-gather every ZeRO-3 forward) need
the same number of forwards/backwards on every rank; a rank with fewer rows (dropped zero-variance groups)
runs masked dummy micro-batches that add nothing to the loss or gradient.

Weight sync: `named_weights()` yields one (name, tensor) at a time; under ZeRO-3 each parameter is gathered
only while it is yielded (consume the iterator fully, on every rank, copying each tensor before the next).
When the rollout engine samples from the learner's own module (the HF engine) under ZeRO-3, the learner
trains a private copy (`owns_weights_copy`) and the trainer pushes weights into the engine's module.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from two_grpo.config.schema import TrainConfig
from two_grpo.data.batch import TrainBatch
from two_grpo.dist.context import ensure_process_group
from two_grpo.learner.device import batch_to
from two_grpo.learner.ds_config import deepspeed_config, warmup_constant
from two_grpo.learner.micro import micro_batches
from two_grpo.learner.step import accumulate, forward_logprobs, micro_batch_loss, summarize


def _import_deepspeed():
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    from deepspeed.utils import logger as ds_logger

    if not torch.cuda.is_available():
        # DeepSpeed's CPU communication backend JIT-compiles a shared-memory all-reduce (C++, ~25 s on 2 cores, on
        # a machine's first run) that only `inference_all_reduce` (DeepSpeed inference) uses; training reduces
        # through torch.distributed (gloo), so two-grpo never calls it: skip the build.
        import importlib  # (`import deepspeed.comm.torch as m` gives torch itself: deepspeed.comm imports torch)

        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None

    ds_logger.setLevel(logging.WARNING)
    return deepspeed


class DeepSpeedLearner:
    def __init__(self, model: Any, cfg: TrainConfig, engine_shares_model: bool = True):
        deepspeed = _import_deepspeed()
        self.dist = ensure_process_group()
        self.cfg, self.lc, self.algo, self.temperature = cfg, cfg.learner, cfg.algo, cfg.rollout.temperature
        self.stage = self.lc.zero_stage
        self.owns_weights_copy = self.stage == 3 and engine_shares_model
        if self.owns_weights_copy:  # ZeRO-3 partitions the module in place; the engine keeps the original
            model = copy.deepcopy(model)
        self.ref_model = None
        if self.algo.kl_coef > 0:  # frozen full copy of the initial policy on every rank
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        if self.lc.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        self.ds_config = deepspeed_config(cfg, self.dist.world_size)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = None
        if "optimizer" not in self.ds_config:
            optimizer = torch.optim.AdamW(
                params,
                lr=cfg.lr,
                betas=(self.lc.adam_beta1, self.lc.adam_beta2),
                eps=self.lc.adam_eps,
                weight_decay=self.lc.weight_decay,
            )
        schedule = warmup_constant(self.lc.warmup_steps)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            model_parameters=params,
            optimizer=optimizer,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
            config=self.ds_config,
        )
        self._place_reference()
        self.skipped_updates = 0

    # ---- scoring -------------------------------------------------------------------------------------------
    def logprobs(self, batch: TrainBatch | None) -> torch.Tensor | None:
        """[R, L-1] log-probs of the local batch under the current weights (no grad); None for a None batch."""
        return self._logprobs(self.engine, batch)

    def ref_logprobs(self, batch: TrainBatch | None) -> torch.Tensor | None:
        """[R, L-1] log-probs under the frozen reference (initial) policy."""
        assert self.ref_model is not None, "ref_logprobs needs algo.kl_coef > 0"
        return self._logprobs(self.ref_model, batch)

    @torch.no_grad()
    def _logprobs(self, model: Any, batch: TrainBatch | None) -> torch.Tensor | None:
        chunks = self._micro_batches(batch)
        out = torch.zeros_like(batch.loss_mask) if batch is not None else None
        start = 0
        for micro in chunks:
            logp, _ = forward_logprobs(
                model, self._to_device(micro), self.temperature, chunk_tokens=self.lc.logits_chunk_tokens
            )
            if out is not None and micro is not self._dummy:
                out[start : start + len(micro), : logp.shape[1]] = logp.float().cpu()
                start += len(micro)
        return out

    # ---- training ------------------------------------------------------------------------------------------
    def train_minibatch(self, mb: TrainBatch | None) -> dict[str, float]:
        """One optimizer step on this rank's slice `mb` of the mini-batch (None: nothing on this rank)."""
        local = [mb.n_tokens, float(len(mb))] if mb is not None else [0.0, 0.0]
        n_tok, n_seq = self.dist.all_reduce(local)
        chunks = self._micro_batches(mb)
        sums: dict[str, float] = {}
        for i, micro in enumerate(chunks):
            self.engine.set_gradient_accumulation_boundary(i == len(chunks) - 1)
            loss, metrics = micro_batch_loss(
                self.engine,
                self._to_device(micro),
                self.algo,
                self.temperature,
                n_tok,
                n_seq,
                self.lc.logits_chunk_tokens,
            )
            self.engine.backward(loss * self.dist.world_size, scale_wrt_gas=False)
            accumulate(sums, metrics)
        lr = self.scheduler.get_last_lr()[0]
        self.engine.step()
        sums = self._reduce_sums(sums)
        norm = self.engine.get_global_grad_norm()
        grad_norm = float(norm) if norm is not None else float("nan")
        skipped = not self.engine.was_step_applied() or not math.isfinite(sums.get("loss/policy", 0.0))
        self.skipped_updates += int(skipped)
        out = summarize(sums, n_tok)
        out.update({"optim/grad_norm": grad_norm, "optim/lr": lr, "optim/skipped": float(skipped)})
        out["loss/clip_frac"] = out.get("loss/clip_frac_low", 0.0) + out.get("loss/clip_frac_high", 0.0)
        return out

    def _reduce_sums(self, sums: dict[str, float]) -> dict[str, float]:
        """Metric sums over ranks: `*_max` keys by max, the rest by sum, over the union of every rank's keys (a
        rank holding only dummy micro-batches reports fewer keys)."""
        if not self.dist.active:
            return sums
        keys = sorted(set().union(*self.dist.all_gather_object(sorted(sums))))
        maxed = [k for k in keys if k.endswith("_max")]
        out = self.dist.reduce_metrics({k: sums.get(k, 0.0) for k in keys if k not in maxed}, "sum")
        out.update(self.dist.reduce_metrics({k: sums.get(k, 0.0) for k in maxed}, "max"))
        return out

    def _micro_batches(self, batch: TrainBatch | None) -> list[TrainBatch]:
        """Local micro-batches, padded with dummies to the largest count over ranks (collectives line up)."""
        chunks = []
        if batch is not None and len(batch):  # consecutive rows (scores are written back in order)
            pairs = self.algo.loss == "pairwise"  # a pair's rows share a micro-batch (they are consecutive)
            parts = micro_batches(batch, self.lc.micro_rollouts, False, self.lc.micro_tokens, whole_groups=pairs)
            chunks = [sub for _, sub in parts]
        n = int(self.dist.all_reduce([float(len(chunks))], "max")[0])
        return chunks + [self._dummy] * (n - len(chunks))

    @property
    def _dummy(self) -> TrainBatch:
        """A one-row micro-batch with an empty loss mask: a forward/backward that adds exactly zero."""
        if not hasattr(self, "_dummy_batch"):
            self._dummy_batch = TrainBatch(
                input_ids=torch.zeros((1, 2), dtype=torch.long),
                attention_mask=torch.ones((1, 2), dtype=torch.long),
                loss_mask=torch.zeros((1, 1)),
                adv=torch.zeros(1),
                group_ids=torch.full((1,), -1, dtype=torch.long),
                ref_logp=torch.zeros((1, 1)),  # masked out; present so a KL term has an input
            )
        return self._dummy_batch

    def _to_device(self, b: TrainBatch) -> TrainBatch:
        """Every field of `b` (behav_logp included) on the engine's device."""
        return batch_to(b, self.engine.device)

    def _place_reference(self) -> None:
        """The frozen reference model (kl_coef > 0) on the engine's device, so its forward does not mix devices."""
        if self.ref_model is not None:
            self.ref_model.to(self.engine.device)

    # ---- weights and state ---------------------------------------------------------------------------------
    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, full tensor) of every parameter, one at a time (ZeRO-3: gathered only while yielded).

        Collective under ZeRO-3: every rank must consume the whole iterator, copying each tensor before the next.
        """
        module = self.engine.module
        if self.stage != 3:
            for name, p in module.named_parameters():
                yield name, p.detach()
            return
        import deepspeed

        for name, p in module.named_parameters():
            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                yield name, p.data

    def save_state(self, folder: Path) -> None:
        """Model, optimizer (every rank's ZeRO partition) and lr schedule into `folder`. Collective."""
        self.engine.save_checkpoint(
            str(folder), tag="deepspeed", client_state={"skipped_updates": self.skipped_updates}, save_latest=False
        )

    def load_state(self, folder: Path) -> None:
        """Inverse of save_state (same world size). Collective; weights are restored in place."""
        _, client = self.engine.load_checkpoint(
            str(folder), tag="deepspeed", load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if client is None:
            raise FileNotFoundError(f"no DeepSpeed learner state in {folder}")
        self.skipped_updates = int(client.get("skipped_updates", 0))

"""Moving a TrainBatch to the learner's device: every tensor field, so none is silently dropped."""

from __future__ import annotations

import dataclasses

import torch

from two_grpo.data.batch import TrainBatch


def batch_to(batch: TrainBatch, device: torch.device) -> TrainBatch:
    """`batch` with every tensor field (None stays None) on `device`; the batch itself when it is already there."""
    device = torch.device(device)
    if device.type == "cpu" and batch.input_ids.device.type == "cpu":
        return batch
    moved = {}
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        if torch.is_tensor(value):
            value = value.to(device, non_blocking=True)
        moved[f.name] = value
    return dataclasses.replace(batch, **moved)

"""Log-probs and entropy against a naive loop. Run: pytest tests/unit/test_logprobs.py"""

import math

import pytest
import torch

from two_grpo.algo.logprobs import token_entropy, token_logprobs


def test_matches_naive_loop_with_temperature():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=g)
    labels = torch.randint(0, 5, (2, 3), generator=g)
    got = token_logprobs(logits, labels, temperature=0.7)
    for b in range(2):
        for t in range(3):
            z = [x / 0.7 for x in logits[b, t].tolist()]
            ref = z[labels[b, t]] - math.log(sum(math.exp(v) for v in z))
            assert got[b, t].item() == pytest.approx(ref, abs=1e-5)


def test_entropy_of_uniform_is_log_vocab():
    assert token_entropy(torch.zeros(1, 1, 8)).item() == pytest.approx(math.log(8), abs=1e-6)

"""Model FLOP counting (two_grpo/study/flops.py): hand-checked on a tiny Qwen2, and against torch's FlopCounterMode on
the real HF model (eager attention, so every matmul is visible to the counter)."""

from __future__ import annotations

import torch
from models import random_model, small_config

from two_grpo.study import flops


def tiny_config():  # head_dim 4, q_dim 8, kv_dim 4 (GQA 2:1)
    return small_config(10, 8, 16, heads=2, kv_heads=1, positions=32, attn_implementation="eager")


def tiny_model():
    return random_model(tiny_config(), attn="eager")


def test_hand_counted_tiny_qwen2():
    s = flops.Shape.of(tiny_config())
    assert (s.hidden, s.intermediate, s.layers, s.q_dim, s.kv_dim, s.vocab) == (8, 16, 2, 8, 4, 10)
    # per layer: q 8·8 + k,v 2·8·4 + o 8·8 + gate,up,down 3·8·16 = 64 + 64 + 64 + 384 = 576; 2 layers
    assert s.body_params == 1152 and s.head_params == 80
    # rows of 3 and 5 tokens, 4 scored: body 2·1152·8 = 18432, attention 4·2·8·(9 + 25) = 2176, head 2·80·4 = 640
    assert flops.forward_flops(s, [3, 5], 4) == 18432 + 2176 + 640
    assert flops.learner_flops(s, [3, 5], 4) == 3 * 21248
    # prompt 3, 2 generated: body over 3 + 1 tokens 9216, prefill attention 4·2·8·9 = 576, one decode step
    # attending to 4 keys 4·2·8·4 = 256, head twice 320
    assert flops.sampler_flops(s, 3, 2) == 9216 + 576 + 256 + 320
    assert flops.sampler_flops(s, 3, 0) == 0
    sample, learn = flops.rollout_flops(s, [(3, 2), (1, 4)])
    assert sample == flops.sampler_flops(s, 3, 2) + flops.sampler_flops(s, 1, 4)
    assert learn == flops.learner_flops(s, [5, 5], 6)


def counted(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_forward_and_backward_match_flop_counter():
    model, s = tiny_model(), flops.Shape.of(tiny_config())
    ids = torch.randint(0, 10, (3, 7))
    fwd = counted(lambda: model(input_ids=ids, use_cache=False))  # head on all 21 positions
    assert fwd == flops.forward_flops(s, [7, 7, 7], 21)
    out = model(input_ids=ids, use_cache=False).logits.sum()
    bwd = counted(out.backward)
    assert fwd + bwd == flops.learner_flops(s, [7, 7, 7], 21)


def test_sampler_matches_flop_counter_on_generate():
    model, s = tiny_model(), flops.Shape.of(tiny_config())
    model.eval()
    ids = torch.randint(3, 10, (1, 5))
    n = 6
    with torch.no_grad():
        total = counted(lambda: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                               min_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=None))  # fmt: skip
    assert total == flops.sampler_flops(s, 5, n)


def test_matmul_peak_reports_each_shape():
    res = flops.matmul_peak([(64, 32, 16), (32, 32, 32)], repeats=2, min_s=0.01)
    assert [(r["m"], r["k"], r["n"]) for r in res["shapes"]] == [(64, 32, 16), (32, 32, 32)]
    for r in res["shapes"]:
        assert 0 < r["median_flops_per_s"] <= r["max_flops_per_s"]
    assert res["peak_flops_per_s"] == max(r["median_flops_per_s"] for r in res["shapes"])
    shapes = flops.model_matmul_shapes(flops.Shape.of(tiny_config()), 100)
    assert (100, 8, 10) in shapes and (100, 16, 8) in shapes and shapes[-1] == (1024, 1024, 1024)


def test_shared_prefix_learner_flops_hand_counted():
    s = flops.Shape.of(tiny_config())
    # one group: prompt 3, responses 2 and 1. body over 3 + 2 + 1 = 6 tokens: 2·1152·6 = 13824; attention
    # 4·2·8·(3·3 + (2·2 + 2·3·2) + (1·1 + 2·3·1)) = 64·32 = 2048; head on 3 scored: 2·80·3 = 480
    assert flops.shared_prefix_learner_flops(s, [(3, [2, 1])]) == 3 * (13824 + 2048 + 480)
    # a group of one row is that row: the same count as learner_flops
    assert flops.shared_prefix_learner_flops(s, [(3, [2]), (1, [4])]) == flops.learner_flops(s, [5, 5], 6)
    # sharing saves: two rows of prompt 3 + response 2 as rows vs as one group
    assert flops.shared_prefix_learner_flops(s, [(3, [2, 2])]) < flops.learner_flops(s, [5, 5], 4)

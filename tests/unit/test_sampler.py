"""Prompt order: deterministic per (seed, epoch), crosses epoch boundaries, restores its position.
Run: pytest tests/unit/test_sampler.py"""

from two_grpo.data.sampler import PromptSampler


def test_every_prompt_once_per_epoch_and_continues_across_the_boundary():
    s = PromptSampler(10, 4, seed=3)
    batches = [s.next_batch() for _ in range(5)]  # 20 prompts = 2 epochs exactly
    flat = [i for b in batches for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert all(len(b) == 4 for b in batches)  # batch 3 straddles the epoch boundary and is still full
    assert s.epochs_done == 2.0


def test_same_seed_same_order_and_state_round_trip():
    a, b = PromptSampler(50, 8, seed=1), PromptSampler(50, 8, seed=1)
    assert [a.next_batch() for _ in range(9)] == [b.next_batch() for _ in range(9)]
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(4)]
    c = PromptSampler(50, 8, seed=1)
    c.load_state_dict(state)
    assert [c.next_batch() for _ in range(4)] == expected
    assert PromptSampler(50, 8, seed=2).next_batch() != PromptSampler(50, 8, seed=1).next_batch()

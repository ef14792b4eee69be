"""Collation, masks and group handling. Run: pytest tests/unit/test_batch.py"""

import torch

from two_grpo.data.batch import Rollout, collate, split_groups


def r(gid, prompt, resp, adv=0.0):
    return Rollout(
        group_id=gid,
        prompt_id=gid,
        prompt_token_ids=prompt,
        token_ids=resp,
        text="",
        finish_reason="stop",
        advantage=adv,
    )


def test_collate_masks_response_targets_only():
    b = collate([r(0, [5, 6, 7], [8, 9], 1.0), r(1, [5], [8, 9, 10], -1.0)], pad_id=0)
    # rows: [5,6,7,8,9] and [5,8,9,10,0]
    assert b.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 8, 9, 10, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    # loss_mask[j] = 1 when input_ids[j+1] is a response token
    assert b.loss_mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 0]]
    assert b.adv.tolist() == [1.0, -1.0]
    assert b.n_tokens == 5


def test_select_trims_padding_columns():
    b = collate([r(0, [5], [8]), r(1, [5, 6, 7, 8], [9, 9, 9])], pad_id=0)
    small = b.select(torch.tensor([0]))
    assert small.input_ids.shape == (1, 2) and small.loss_mask.shape == (1, 1)


def test_split_groups_keeps_groups_whole_in_order_of_appearance():
    rs = [r(g, [1], [2]) for g in (3, 3, 1, 1, 9, 9, 4, 4)]
    chunks = split_groups(rs, 2)
    assert [[x.group_id for x in c] for c in chunks] == [[3, 3, 1, 1], [9, 9, 4, 4]]
    shuffled = [rs[i] for i in (1, 6, 0, 3, 5, 2, 4, 7)]
    chunks = split_groups(shuffled, 2)
    assert all(len({x.group_id for x in c}) == 2 and len(c) == 4 for c in chunks)

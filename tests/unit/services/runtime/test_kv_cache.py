"""KV slots: capacity grows in blocks and keeps what a slot holds; the causal mask of a span."""

from __future__ import annotations

import torch

from specdec.services.runtime.kv_cache import KVShape, Slot, causal_mask, grown_capacity

SHAPE = KVShape(layers=2, kv_heads=3, head_dim=4, dtype=torch.float32, device=torch.device("cpu"))


def test_capacity_grows_in_whole_blocks_at_least_doubling_up_to_the_limit():
    assert grown_capacity(10, 0, 512, block=64) == 64
    assert grown_capacity(64, 64, 512, block=64) == 64  # fits: no growth
    assert grown_capacity(65, 64, 512, block=64) == 128
    assert grown_capacity(300, 128, 512, block=64) == 320
    assert grown_capacity(130, 128, 512, block=64) == 256
    assert grown_capacity(500, 320, 512, block=64) == 512


def test_a_grown_slot_keeps_what_it_held():
    slot = Slot(SHAPE, width=1, capacity=4)
    keys, values = torch.randn(1, 3, 3, 4), torch.randn(1, 3, 3, 4)
    slot.write(1, 0, keys, values)
    slot.length = 3
    slot.reserve(9, limit=512)
    assert slot.capacity == 64
    held_keys, held_values = slot.view(1, 3)
    assert torch.equal(held_keys, keys) and torch.equal(held_values, values)


def test_copies_repeat_the_held_positions_and_have_room():
    slot = Slot(SHAPE, width=1, capacity=8)
    keys = torch.randn(1, 3, 5, 4)
    slot.write(0, 0, keys, -keys)
    slot.length = 5
    fork = slot.copies(3, extra=4, limit=512)
    assert fork.width == 3 and fork.length == 5 and fork.capacity >= 9
    fork_keys, fork_values = fork.view(0, 5)
    assert torch.equal(fork_keys, keys.expand(3, -1, -1, -1)) and torch.equal(fork_values, -fork_keys)


def test_the_causal_mask_sees_the_past_and_the_earlier_new_tokens():
    assert causal_mask(5, 1, torch.device("cpu")) is None
    mask = causal_mask(2, 3, torch.device("cpu"))
    assert mask.tolist() == [[True, True, True, False, False], [True, True, True, True, False], [True] * 5]


# Two layers on "cpu" and two on "cpu:0": the same memory, but two devices as far as a slot can tell, so it
# keeps one part per run of layers as it does for a model spanning GPUs.
SPLIT = KVShape(layers=4, kv_heads=3, head_dim=4, dtype=torch.float32, device=torch.device("cpu"),
                layer_devices=(torch.device("cpu"),) * 2 + (torch.device("cpu", 0),) * 2)


def test_a_model_spanning_devices_keeps_a_part_per_run_of_layers():
    assert SPLIT.device_groups() == [(torch.device("cpu"), 2), (torch.device("cpu", 0), 2)]
    assert SHAPE.device_groups() == [(torch.device("cpu"), 2)]
    assert len(Slot(SPLIT, width=1, capacity=8).parts) == 2


def test_a_slot_in_parts_holds_writes_grows_and_copies_as_one_part_does():
    whole = Slot(KVShape(4, 3, 4, torch.float32, torch.device("cpu")), width=1, capacity=4)
    split = Slot(SPLIT, width=1, capacity=4)
    for layer in range(4):
        keys, values = torch.randn(1, 3, 3, 4), torch.randn(1, 3, 3, 4)
        for slot in (whole, split):
            slot.write(layer, 0, keys, values)
            slot.length = 3
    for slot in (whole, split):
        slot.reserve(70, limit=512)
    forks = [slot.copies(2, 1, 512) for slot in (whole, split)]
    for layer in range(4):
        for a, b in ((whole, split), tuple(forks)):
            assert all(torch.equal(x, y) for x, y in zip(a.view(layer, 3), b.view(layer, 3), strict=True))
    assert split.capacity == whole.capacity == 128 and forks[1].width == 2

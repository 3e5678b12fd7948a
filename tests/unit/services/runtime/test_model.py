"""The shared model runtime on the real demo target: KV rollback then extend equals a fresh prefill, batched
rows equal one session at a time, forks equal sessions of their own."""

from __future__ import annotations

import pytest
import torch

from specdec.config import resolve_model
from specdec.errors import SessionError
from specdec.services.runtime.kv_cache import CAPACITY_BLOCK
from specdec.services.runtime.model import CausalLM, LoadSpec, packed_layout


@pytest.fixture(scope="module")
def lm() -> CausalLM:
    return CausalLM(LoadSpec(resolve_model("demo:target")))


def test_rollback_then_extend_equals_fresh_prefill(lm: CausalLM):
    prefix, wrong, right = [5, 17, 99, 250, 3, 41], [7, 8, 9], [11, 12]
    lm.extend("a", 0, prefix)
    lm.extend("a", len(prefix), wrong)
    assert lm.cache_len("a") == len(prefix) + 3
    rolled = lm.extend("a", len(prefix) + 1, right)  # keep one of the wrong tokens, replace the rest
    fresh = lm.extend("b", 0, prefix + wrong[:1] + right)[-len(right):]
    assert torch.allclose(rolled, fresh, atol=1e-4)
    assert lm.cache_len("a") == lm.cache_len("b") == len(prefix) + 1 + len(right)
    assert lm.end_session("a") and lm.end_session("b") and not lm.end_session("a")


def test_logits_cover_the_tokenizer_vocabulary(lm: CausalLM):
    assert lm.extend("c", 0, [1, 2, 3]).shape == (3, len(lm.tokenizer))
    lm.end_session("c")


@pytest.mark.parametrize("keep_len, tokens, field", [(3, [1], "keep_len"), (-1, [1], "keep_len"), (0, [], "new_tokens"),
                                                     (0, [1] * 513, "new_tokens")])
def test_session_errors_name_the_field(lm: CausalLM, keep_len, tokens, field):
    lm.extend("d", 0, [1, 2])
    with pytest.raises(SessionError) as info:
        lm.extend("d", keep_len, tokens)
    assert info.value.field == field and info.value.code == "FAILED_PRECONDITION"
    lm.end_session("d")


def test_a_session_the_model_does_not_hold_is_not_found_unless_started_afresh(lm: CausalLM):
    with pytest.raises(SessionError) as info:
        lm.extend("never-seen", 2, [1])
    assert info.value.field == "session_id" and info.value.code == "NOT_FOUND"
    assert lm.extend("never-seen", 0, [1]).shape[0] == 1  # keep_len 0 starts it
    lm.end_session("never-seen")


def test_info_describes_the_model(lm: CausalLM):
    info = lm.info()
    assert info.vocab_size == len(lm.tokenizer) and info.eos_token_id == lm.tokenizer.eos_token_id
    assert info.device == str(lm.device) and info.dtype == "float32" and len(info.tokenizer_fingerprint) == 16


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype"):
        CausalLM(LoadSpec(resolve_model("demo:draft"), dtype="float8"))


def test_batched_extend_equals_one_session_at_a_time(lm: CausalLM):
    histories = {"b0": [5, 17, 99], "b1": [], "b2": [8, 9, 10, 11, 12, 13, 14], "b3": [300]}
    appends = {"b0": [1, 2], "b1": [40, 41, 42, 43], "b2": [7], "b3": [2, 3, 4]}
    for sid, tokens in histories.items():
        if tokens:
            lm.extend(sid, 0, tokens)
            lm.extend(f"solo-{sid}", 0, tokens)
    keep = {"b0": 2, "b1": 0, "b2": 7, "b3": 1}  # b0 also rolls back one token
    batched = lm.extend_batch([(sid, keep[sid], appends[sid]) for sid in histories])
    for (sid, tokens), logits in zip(appends.items(), batched, strict=True):
        solo = lm.extend(f"solo-{sid}", keep[sid], tokens)
        assert torch.allclose(logits, solo, atol=1e-4), sid
        assert lm.cache_len(sid) == lm.cache_len(f"solo-{sid}")
    # the caches cut back out of the batch keep working one session at a time
    for sid in histories:
        after = lm.extend(sid, lm.cache_len(sid), [77])
        solo = lm.extend(f"solo-{sid}", lm.cache_len(f"solo-{sid}"), [77])
        assert torch.allclose(after, solo, atol=1e-4)
        lm.end_session(sid)
        lm.end_session(f"solo-{sid}")


def test_packed_layout_places_every_item_and_keeps_the_logits_asked_for():
    positions, keep = packed_layout([3, 0, 7], [2, 4, 1], [2, 0, 1])
    assert positions == [3, 4, 0, 1, 2, 3, 7]
    assert keep == [0, 1, 6]  # the first item's two tokens, none of the chunk's, the last item's one


def test_a_long_prefill_shares_a_forward_with_short_windows_unpadded(lm: CausalLM):
    lm.extend("short", 0, [5, 6, 7])
    lm.extend("chunked", 0, list(range(60, 70)))
    prompt = list(range(10, 50))
    batched = lm.extend_batch([("short", 3, [8, 9]), ("prefill", 0, prompt), ("chunked", 10, list(range(70, 80)))],
                              logits_of=[2, 40, 0])
    assert [rows.shape[0] for rows in batched] == [2, 40, 0]
    assert torch.allclose(batched[0], lm.extend("solo-short", 0, [5, 6, 7, 8, 9])[-2:], atol=1e-4)
    assert torch.allclose(batched[1], lm.extend("solo-prefill", 0, prompt), atol=1e-4)
    assert lm.cache_len("chunked") == 20  # a chunk without logits still fills the cache
    assert torch.allclose(lm.extend("chunked", 20, [80])[0], lm.extend("whole", 0, list(range(60, 81)))[-1], atol=1e-4)
    for sid in ("short", "prefill", "chunked", "solo-short", "solo-prefill", "whole"):
        lm.end_session(sid)


def test_a_session_slot_grows_in_blocks_as_it_is_used(lm: CausalLM):
    lm.extend("grow", 0, [5, 6, 7])
    slot = lm.sessions["grow"].slot
    assert slot.capacity == CAPACITY_BLOCK < lm.max_context  # allocated on first use, not for the whole context
    before = lm.extend("solo-grow", 0, list(range(3, 3 + CAPACITY_BLOCK + 5)))[-1]
    after = lm.extend("grow", 0, list(range(3, 3 + CAPACITY_BLOCK + 5)))[-1]  # grows past its first block
    assert lm.sessions["grow"].slot.capacity == 2 * CAPACITY_BLOCK and torch.allclose(before, after, atol=1e-4)
    lm.extend("grow", 2, [9])  # rollback is a length: the capacity stays
    assert lm.cache_len("grow") == 3 and lm.sessions["grow"].slot.capacity == 2 * CAPACITY_BLOCK
    lm.end_session("grow")
    lm.end_session("solo-grow")


def test_rows_extend_like_sessions_one_at_a_time(lm: CausalLM):
    lm.extend("r0", 0, [5, 17, 99])
    lm.extend("r1", 0, [8, 9, 10, 11, 12])
    step = lm.extend_rows(lm.rows(["r0", "r1"]), torch.tensor([[40], [41]], device=lm.device))[:, -1]
    assert torch.allclose(step[0], lm.extend("solo-r0", 0, [5, 17, 99, 40])[-1], atol=1e-4)
    assert torch.allclose(step[1], lm.extend("solo-r1", 0, [8, 9, 10, 11, 12, 41])[-1], atol=1e-4)
    assert lm.cache_len("r0") == 4 and lm.cache_len("r1") == 6
    for sid in ("r0", "r1", "solo-r0", "solo-r1"):
        lm.end_session(sid)


def test_a_fork_extends_copies_and_leaves_its_session_alone(lm: CausalLM):
    prefix, windows = [5, 17, 99, 250], [[1, 2, 3], [7, 8, 9]]
    lm.extend("f", 0, prefix)
    forked = lm.extend_rows(lm.fork("f", 2), torch.tensor(windows, device=lm.device))
    assert forked.shape == (2, 3, lm.vocab_size) and lm.cache_len("f") == len(prefix)
    for m, window in enumerate(windows):
        assert torch.allclose(forked[m], lm.extend(f"solo-f{m}", 0, prefix + window)[-3:], atol=1e-4)
    assert torch.allclose(lm.extend("f", 4, [1])[-1], lm.extend("solo-f0", 0, prefix + [1])[-1], atol=1e-4)
    for sid in ("f", "solo-f0", "solo-f1"):
        lm.end_session(sid)

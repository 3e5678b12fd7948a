"""The shared model runtime on the real demo target: KV rollback then extend equals a fresh prefill."""

from __future__ import annotations

import pytest
import torch

from specdec.config import resolve_model
from specdec.runtime.model import CausalLM, LoadSpec, SessionError, width_groups


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
    assert lm.sessions["a"].tokens == lm.sessions["b"].tokens
    assert lm.end_session("a") and lm.end_session("b") and not lm.end_session("a")


def test_logits_cover_the_tokenizer_vocabulary(lm: CausalLM):
    assert lm.extend("c", 0, [1, 2, 3]).shape == (3, len(lm.tokenizer))
    lm.end_session("c")


@pytest.mark.parametrize("keep_len, tokens, field", [(3, [1], "keep_len"), (-1, [1], "keep_len"), (0, [], "new_tokens"),
                                                     (0, [10**6], "new_tokens")])
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
    assert info.device == "cpu" and info.dtype == "float32" and len(info.tokenizer_fingerprint) == 16


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
        assert lm.sessions[sid].tokens == lm.sessions[f"solo-{sid}"].tokens
    # the caches cut back out of the batch keep working one session at a time
    for sid in histories:
        after = lm.extend(sid, lm.cache_len(sid), [77])
        solo = lm.extend(f"solo-{sid}", lm.cache_len(f"solo-{sid}"), [77])
        assert torch.allclose(after, solo, atol=1e-4)
        lm.end_session(sid)
        lm.end_session(f"solo-{sid}")


def test_a_long_prefill_gets_a_forward_of_its_own(lm: CausalLM):
    assert width_groups([1, 5, 40, 2, 3, 60, 9]) == [[0, 3, 4, 1], [6], [2, 5]]
    assert width_groups([]) == [] and width_groups([30]) == [[0]]
    lm.extend("short", 0, [5, 6, 7])
    prompt = list(range(10, 50))
    batched = lm.extend_batch([("short", 3, [8, 9]), ("prefill", 0, prompt)])
    assert torch.allclose(batched[0], lm.extend("solo-short", 0, [5, 6, 7, 8, 9])[-2:], atol=1e-4)
    assert torch.allclose(batched[1], lm.extend("solo-prefill", 0, prompt), atol=1e-4)
    for sid in ("short", "prefill", "solo-short", "solo-prefill"):
        lm.end_session(sid)

"""Each runner call is checked once, just before it runs: against its session as the calls before it in the
batch left it (hand-written Markov fakes, no model)."""

from __future__ import annotations

from specdec.services.draft.runner import DraftRunner
from specdec.services.runtime.model import SessionError
from specdec.services.target.runner import TargetRunner
from specdec.types import ProposeCall, SamplingParams, VerifyCall
from tests.fakes import MarkovLM, random_table

GREEDY = SamplingParams(temperature=0.0)


def propose(session_id: str, keep_len: int, tokens: list[int], gamma: int = 3) -> ProposeCall:
    return ProposeCall(session_id, 1, keep_len, tokens, gamma, GREEDY, seed=0, want_probs=False)


def test_each_call_is_checked_once():
    draft, target = MarkovLM(random_table(6, 1)), MarkovLM(random_table(6, 2))
    DraftRunner(draft).propose_batch([propose("a", 0, [1, 2]), propose("b", 0, [3]), propose("c", 0, [4], 1)])
    TargetRunner(target).verify_batch([VerifyCall(sid, 1, 0, [1], [2, 3], GREEDY, want_probs=False)
                                       for sid in ("a", "b")])
    assert draft.checks == 3 and target.checks == 2


def test_a_second_call_of_a_session_is_checked_after_the_first_ran():
    draft = MarkovLM(random_table(6, 1))
    first, second = propose("a", 0, [1, 2]), propose("a", 4, [5])  # 2 fed + 2 drafted tokens are cached after the first
    results = DraftRunner(draft).propose_batch([first, second, propose("a", 9, [5])])
    assert [type(result).__name__ for result in results] == ["Proposal", "Proposal", "SessionError"]
    assert results[1].cache_len == 4 + 1 + 2 and results[2].field == "keep_len"


def test_a_window_past_the_context_is_refused_naming_gamma():
    draft = MarkovLM(random_table(6, 1), max_context=8)
    result = DraftRunner(draft).propose_batch([propose("a", 0, [1] * 6, gamma=4)])[0]
    assert isinstance(result, SessionError) and result.field == "gamma"
    assert draft.cache_len("a") == 0  # refused before it ran


def test_a_run_past_the_context_is_refused_naming_decode_tokens():
    target = MarkovLM(random_table(6, 2), max_context=8)
    result = TargetRunner(target).verify_batch([VerifyCall("a", 1, 0, [1] * 6, [], GREEDY, decode_tokens=4)])[0]
    assert isinstance(result, SessionError) and result.field == "decode_tokens"
    assert target.cache_len("a") == 0


def test_decoded_runs_ride_in_a_batch_beside_windows():
    """Runs of different lengths and a window of another session in one batch: each run is the target's
    greedy path, fed back position by position; the window is scored as it would be alone."""
    table = random_table(6, 2)
    target = MarkovLM(table)
    results = TargetRunner(target).verify_batch([
        VerifyCall("a", 1, 0, [1, 2], [], GREEDY, decode_tokens=5), VerifyCall("b", 1, 0, [3], [4, 5], GREEDY),
        VerifyCall("c", 1, 0, [0], [], GREEDY, decode_tokens=2)])
    alone = TargetRunner(MarkovLM(table)).verify(VerifyCall("b", 1, 0, [3], [4, 5], GREEDY))
    for result, start, count in ((results[0], 2, 5), (results[2], 0, 2)):
        path, last = [], start
        for _ in range(count):
            last = int(table[last].argmax())
            path.append(last)
        assert result.decoded_tokens == path == result.target_argmax
    assert results[0].cache_len == 2 + 5 - 1 and results[2].cache_len == 1 + 2 - 1  # the last token is not fed
    assert results[1].target_argmax == alone.target_argmax and results[1].decoded_tokens == []

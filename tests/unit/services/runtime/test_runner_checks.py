"""Each runner call is checked once, just before it runs: against its session as the calls before it in the
batch left it (hand-written Markov fakes, no model)."""

from __future__ import annotations

from specdec.services.draft.runner import DraftRunner
from specdec.services.runtime.batcher import Continue, run_to_end
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
    results = run_to_end(TargetRunner(target).verify_batch, [
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


def test_a_newcomer_joins_a_run_at_its_next_forward_and_a_finished_call_leaves():
    """Continuous batching in the target: each batch is one forward; a run answers Continue until its last
    position, and a call that arrives meanwhile rides in the run's next forward."""
    table = random_table(6, 2)
    target = MarkovLM(table)
    runner = TargetRunner(target)
    [step] = runner.verify_batch([VerifyCall("run", 1, 0, [1, 2], [], GREEDY, decode_tokens=4)])
    assert isinstance(step, Continue) and target.batches == [1]
    step, window = runner.verify_batch([step.rest, VerifyCall("new", 1, 0, [3], [4, 5], GREEDY)])
    assert target.batches == [1, 2]  # one forward: the run's second position beside the newcomer's window
    assert isinstance(step, Continue) and window.target_argmax == TargetRunner(MarkovLM(table)).verify(
        VerifyCall("alone", 1, 0, [3], [4, 5], GREEDY)).target_argmax
    [result] = run_to_end(runner.verify_batch, [step.rest])
    assert result.decoded_tokens == TargetRunner(MarkovLM(table)).verify(
        VerifyCall("solo", 1, 0, [1, 2], [], GREEDY, decode_tokens=4)).decoded_tokens
    assert target.batches == [1, 2, 1, 1] and result.batch_tokens == 2 + 4 + 1 + 1


def test_a_long_prompt_is_prefilled_in_chunks_beside_the_others_windows():
    """Past the forward's token budget a prompt feeds a chunk a forward (every other call's window whole in
    each), and its window is scored with the last chunk as it would be unchunked."""
    table = random_table(6, 2)
    target = MarkovLM(table)
    runner = TargetRunner(target, max_batch_tokens=24)
    prompt = [1, 2, 3, 4, 5, 0] * 8  # 48 tokens
    target.extend("other", 0, [1])
    chunk, window = runner.verify_batch([VerifyCall("long", 1, 0, prompt, [4, 5], GREEDY),
                                         VerifyCall("other", 1, 1, [2], [3], GREEDY)])
    assert isinstance(chunk, Continue) and target.cache_len("long") == 24 - 3 - 2  # what the windows leave
    assert window.target_argmax == [int(table[t].argmax()) for t in (2, 3)]
    [result] = run_to_end(runner.verify_batch, [chunk.rest])
    alone = TargetRunner(MarkovLM(table)).verify(VerifyCall("alone", 1, 0, prompt, [4, 5], GREEDY))
    assert result.target_argmax == alone.target_argmax and result.cache_len == alone.cache_len == 50


def test_a_long_prompt_is_prefilled_in_chunks_before_the_draft_drafts():
    table = random_table(6, 1)
    draft = MarkovLM(table)
    runner = DraftRunner(draft, max_batch_tokens=8)
    prompt = [1, 2, 3, 4, 5, 0] * 6  # 36 tokens
    first = runner.propose_batch([propose("long", 0, prompt), propose("short", 0, [2])])
    assert isinstance(first[0], Continue) and len(first[1].draft_tokens) == 3
    # the budget leaves 6 tokens after the two calls' last ones: the prompt advances by the floor, 16
    assert first[0].rest.keep_len == draft.cache_len("long") == 16 and first[0].rest.new_tokens == prompt[16:]
    [result] = run_to_end(runner.propose_batch, [first[0].rest])
    assert result.draft_tokens == DraftRunner(MarkovLM(table)).propose(propose("alone", 0, prompt)).draft_tokens

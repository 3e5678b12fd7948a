"""The cache view: which call makes a service's cache hold a sequence, and what the view believes after a call,
a call that may or may not have run, and a round's commit. Table-driven over small token lists, then seeded
random histories checked against a fake cache that changes as a service's does."""

from __future__ import annotations

import random

import pytest

from specdec.orchestrator.round.cache_view import CacheView, common_prefix


@pytest.mark.parametrize(
    "a, b, expected",
    [
        pytest.param([], [], 0, id="both-empty"),
        pytest.param([], [1, 2], 0, id="one-empty"),
        pytest.param([1, 2, 3], [1, 2, 3], 3, id="equal"),
        pytest.param([1, 2], [1, 2, 3], 2, id="a-prefix-of-b"),
        pytest.param([1, 2, 3], [1, 2], 2, id="b-prefix-of-a"),
        pytest.param([1, 2, 3], [1, 9, 3], 1, id="diverge-in-the-middle"),
        pytest.param([4, 2], [1, 2], 0, id="diverge-at-once"),
    ],
)
def test_common_prefix_counts_the_leading_equal_tokens(a: list[int], b: list[int], expected: int) -> None:
    assert common_prefix(a, b) == expected
    assert common_prefix(b, a) == expected


@pytest.mark.parametrize(
    "cursor, held, sequence, keep, new",
    [
        pytest.param(0, [], [1, 2, 3], 0, [1, 2, 3], id="fresh-cache-feeds-everything"),
        pytest.param(3, [4, 5, 6], [1, 2, 3, 4, 5, 9], 5, [9], id="draft-window-partly-accepted-keeps-the-accepted"),
        pytest.param(3, [4, 5, 6], [1, 2, 3, 4, 5, 6, 7], 6, [7], id="whole-draft-window-accepted-keeps-it-all"),
        pytest.param(3, [4, 5, 6], [1, 2, 3, 8], 3, [8], id="first-draft-token-rejected-keeps-the-committed"),
        pytest.param(2, [3, 4], [1, 2, 3, 4], 3, [4], id="sequence-equal-to-what-is-held-feeds-the-last-token"),
        pytest.param(3, [], [1, 2, 3], 2, [3], id="sequence-equal-to-the-committed-feeds-the-last-token"),
        pytest.param(2, [3, 4, 5], [1, 2, 3], 2, [3], id="sequence-inside-what-is-held-feeds-its-last-token"),
        pytest.param(5, [], [1, 2, 3], 2, [3], id="sequence-shorter-than-the-cursor-rolls-back"),
        pytest.param(2, [7, 8], [1, 2, 3, 4], 2, [3, 4], id="held-tokens-that-diverge-are-not-kept"),
        pytest.param(0, [1, 2], [1, 2, 3], 2, [3], id="held-tokens-without-a-cursor-are-kept"),
        pytest.param(0, [], [7], 0, [7], id="a-one-token-sequence-feeds-that-token"),
    ],
)
def test_feed_keeps_the_longest_held_prefix_and_feeds_at_least_one_token(
        cursor: int, held: list[int], sequence: list[int], keep: int, new: list[int]) -> None:
    view = CacheView(cursor, list(held))
    assert view.feed(sequence) == (keep, new)
    assert (view.cursor, view.held) == (cursor, held)  # feed only asks; it changes nothing


@pytest.mark.parametrize(
    "cursor, held, keep_len, tokens, cache_len, expected_cursor, expected_held",
    [
        pytest.param(0, [], 0, [1, 2, 3, 4], 4, 0, [1, 2, 3, 4], id="fresh-cache-holds-what-was-fed"),
        pytest.param(3, [], 3, [4, 5, 6], 6, 3, [4, 5, 6], id="a-draft-call-holds-its-window-after-the-cursor"),
        pytest.param(3, [4, 5, 6], 5, [9, 1], 7, 3, [4, 5, 9, 1], id="keep-inside-held-replaces-its-tail"),
        pytest.param(3, [4, 5, 6], 6, [7], 7, 3, [4, 5, 6, 7], id="keep-after-held-appends"),
        pytest.param(3, [4], 1, [7, 8], 3, 1, [7, 8], id="keep-below-the-cursor-moves-the-cursor-back"),
        pytest.param(3, [], 3, [4, 5, 6], 5, 3, [4, 5], id="service-kept-less-last-token-not-fed"),
        pytest.param(3, [4, 5, 6], 5, [9, 1, 2], 5, 3, [4, 5], id="service-kept-only-the-kept-tokens"),
        pytest.param(3, [4, 5], 3, [6, 7], 3, 3, [], id="service-kept-only-the-committed-tokens"),
    ],
)
def test_fed_records_what_the_call_left_cached(cursor: int, held: list[int], keep_len: int, tokens: list[int],
                                               cache_len: int, expected_cursor: int,
                                               expected_held: list[int]) -> None:
    view = CacheView(cursor, list(held))
    view.fed(keep_len, list(tokens), cache_len)
    assert (view.cursor, view.held) == (expected_cursor, expected_held)
    assert view.cursor + len(view.held) == cache_len


@pytest.mark.parametrize(
    "cursor, held, length, expected_cursor, expected_held",
    [
        pytest.param(3, [4, 5, 6], 5, 3, [4, 5], id="inside-held-trims-held"),
        pytest.param(3, [4, 5, 6], 3, 3, [], id="at-the-cursor-drops-held"),
        pytest.param(3, [4, 5, 6], 9, 3, [4, 5, 6], id="past-held-changes-nothing"),
        pytest.param(3, [4, 5, 6], 1, 1, [], id="below-the-cursor-moves-it-back-and-drops-held"),
        pytest.param(3, [], 0, 0, [], id="zero-forgets-everything"),
    ],
)
def test_trust_only_believes_no_more_than_the_first_tokens(cursor: int, held: list[int], length: int,
                                                           expected_cursor: int, expected_held: list[int]) -> None:
    view = CacheView(cursor, list(held))
    view.trust_only(length)
    assert (view.cursor, view.held) == (expected_cursor, expected_held)


@pytest.mark.parametrize(
    "cursor, held, committed, expected_cursor, expected_held",
    [
        pytest.param(2, [3, 4], [1, 2, 3, 4], 4, [], id="held-fully-committed"),
        pytest.param(2, [3, 4], [1, 2, 3, 4, 5], 4, [], id="held-fully-committed-and-more-emitted"),
        pytest.param(2, [3, 4, 5], [1, 2, 3, 4], 4, [5], id="held-partly-committed-keeps-the-rest-held"),
        pytest.param(2, [3, 4, 5], [1, 2, 3, 9], 3, [], id="held-diverging-drops-the-rest"),
        pytest.param(2, [7, 8], [1, 2, 3], 2, [], id="held-diverging-at-once"),
        pytest.param(2, [], [1, 2, 3], 2, [], id="nothing-held"),
        pytest.param(0, [1, 2, 3], [1, 2], 2, [3], id="fresh-cache-moves-its-committed-behind-the-cursor"),
        pytest.param(2, [3], [1, 2], 2, [3], id="nothing-new-committed-keeps-held"),
    ],
)
def test_settle_moves_the_committed_part_of_held_behind_the_cursor(cursor: int, held: list[int],
                                                                   committed: list[int], expected_cursor: int,
                                                                   expected_held: list[int]) -> None:
    view = CacheView(cursor, list(held))
    view.settle(committed)
    assert (view.cursor, view.held) == (expected_cursor, expected_held)


def test_a_draft_round_then_a_partial_acceptance_feeds_only_the_recovered_token() -> None:
    view = CacheView()
    committed = [1, 2, 3]
    keep, new = view.feed(committed)
    assert (keep, new) == (0, [1, 2, 3])
    view.fed(keep, new + [4, 5, 6], cache_len=6)  # the draft fed its window's last token too
    committed += [4, 5, 9]  # two draft tokens accepted, then the recovered token
    view.settle(committed)
    assert (view.cursor, view.held) == (5, [])
    assert view.feed(committed) == (5, [9])


def random_view(rng: random.Random, sequence: list[int]) -> CacheView:
    """Any view: a cursor anywhere (past the sequence too) and held tokens that follow the sequence for a while
    and then may not."""
    cursor = rng.randint(0, len(sequence) + 2)
    following = sequence[cursor:cursor + rng.randint(0, len(sequence))]
    held = following + [rng.randrange(4) for _ in range(rng.randint(0, 3))]
    return CacheView(cursor, held)


@pytest.mark.parametrize("seed", range(5))
def test_after_feeding_and_settling_a_sequence_its_extension_feeds_only_the_new_token(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        sequence = [rng.randrange(4) for _ in range(rng.randint(1, 8))]
        view = random_view(rng, sequence)
        keep, new = view.feed(sequence)
        assert 1 <= len(new) and keep + len(new) == len(sequence) and new == sequence[keep:]
        view.fed(keep, new, len(sequence))
        view.settle(sequence)
        assert (view.cursor, view.held) == (len(sequence), [])
        token = rng.randrange(4)
        assert view.feed(sequence + [token]) == (len(sequence), [token])


class ServiceCache:
    """What a service really holds of a session: a token list that each call rolls back to keep_len and extends."""

    def __init__(self) -> None:
        self.tokens: list[int] = []

    def call(self, keep_len: int, tokens: list[int], fed: int) -> int:
        """Keep keep_len tokens, cache the first `fed` of `tokens`; the cache length, as a call answers it."""
        assert keep_len <= len(self.tokens), "keep_len past what the cache holds"
        self.tokens = self.tokens[:keep_len] + tokens[:fed]
        return len(self.tokens)


@pytest.mark.parametrize("seed", range(5))
def test_the_view_describes_the_cache_through_draft_calls_faults_and_commits(seed: int) -> None:
    """Random rounds: draft calls after the committed tokens and a guessed premise, calls that fail before or
    after running, sessions lost, commits of part of a window. What the view says the cache holds, and every
    keep_len it hands out, must match the real cache."""
    rng = random.Random(seed)
    cache, view = ServiceCache(), CacheView()
    committed = [rng.randrange(3) for _ in range(rng.randint(1, 4))]
    for _ in range(300):
        premise = [rng.randrange(3) for _ in range(rng.randint(0, 2))]
        sequence = committed + premise
        keep, new = view.feed(sequence)
        assert cache.tokens[:keep] == sequence[:keep]  # the kept tokens are what the sequence starts with
        assert new == sequence[keep:] and new
        drafted = [rng.randrange(3) for _ in range(rng.randint(0, 3))]
        outcome = rng.random()
        if outcome < 0.1:  # the service lost the session: the call found nothing
            cache.tokens = []
            view.trust_only(0)
        elif outcome < 0.25:  # a call that may or may not have run
            if rng.random() < 0.5:
                cache.call(keep, new + drafted, len(new) + len(drafted))
            view.trust_only(keep)
        else:  # the window's last draft token may be left unfed
            fed = len(new) + len(drafted) - (1 if drafted and rng.random() < 0.5 else 0)
            view.fed(keep, new + drafted, cache.call(keep, new + drafted, fed))
        accepted = rng.randint(0, len(premise + drafted))
        committed += (premise + drafted)[:accepted] + [rng.randrange(3)]
        view.settle(committed)
        assert view.cursor <= len(committed)
        assert cache.tokens[:view.cursor] == committed[:view.cursor]
        assert cache.tokens[view.cursor:view.cursor + len(view.held)] == view.held

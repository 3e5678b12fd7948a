"""The target model runner: score windows of draft tokens, for several sessions in one forward pass.

Knows the model runtime and the warps, not gRPC or acceptance rules. Position i of a window is the
target's next-token distribution after the committed tokens and the window's first i draft tokens.
Returns the gamma + 1 argmaxes of every window and, for one window, the statistics its call asked for
(`specdec.distributions.scoring`: the target's probability of each draft token, candidate next tokens drawn at
the caller's uniforms, entropies, divergences); whole warped rows (in wire precision) only on request.
Calls of different sessions are scored as one batch, packed into one forward whatever their lengths; a
call with M windows is scored as one batch over a fork of its session's cache, and its session keeps
only the committed tokens. A call without draft tokens may ask for a decoded run (`decode_tokens` > 1):
the target feeds back its own token at each position (the candidate at the caller's uniform, or the
argmax) and scores the next, so a target-only request costs one call per run instead of one per token.

The batch is continuous (`batcher.Continue`): each forward advances every call in it by one step and
answers those that finished. A run advances one position a forward, its token fed back on the device;
a prompt longer than the step's token budget (`max_batch_tokens`) is prefilled in chunks, a chunk a
forward, its window scored with the last. Calls that arrive meanwhile join at the next forward. Scores
are computed on the model's device; the host reads the results of the calls a forward finished
(argmaxes, decoded tokens, statistics, rows) back at once, through pinned memory on CUDA.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from specdec.distributions.scoring import StatisticsSpec, WindowStatistics, inverse_cdf, window_statistics
from specdec.distributions.warps import warped_probs
from specdec.errors import SessionError
from specdec.services.runtime.batcher import MAX_BATCH_TOKENS, PREFILL_CHUNK_FLOOR, Continue, chunk_sizes, run_calls, run_to_end
from specdec.services.runtime.model import SessionLM
from specdec.services.runtime.transfer import to_device, to_host
from specdec.types import FeatureRows, Verification, VerifyCall
from specdec.wire.encoding import wire_precision


def _forks(call: VerifyCall | Progress) -> bool:
    """Whether the call's windows are scored over a fork (M > 1 windows of draft tokens)."""
    return isinstance(call, VerifyCall) and call.num_draft_sequences > 1 and bool(call.draft_tokens)


@dataclass
class Progress:
    """A verify call part-way through, between forwards: how much of its tokens its session holds, and a
    decoded run's positions so far (each on the device)."""

    call: VerifyCall
    started: float
    fed: int = 0  # of the call's tokens (new, then draft), appended so far
    rows: list[torch.Tensor] = field(default_factory=list)  # a run's logits [1, vocab], a position each
    tokens: list[torch.Tensor] = field(default_factory=list)  # a run's tokens [1], a position each
    features: list[torch.Tensor] = field(default_factory=list)  # of the tokens appended so far (asked for)
    batch_tokens: int = 0  # tokens of the forwards it took part in, all sessions'
    uniforms: torch.Tensor | None = None  # a run's, on the device

    @property
    def session_id(self) -> str:
        return self.call.session_id

    @property
    def length(self) -> int:
        """The tokens its session holds now."""
        return self.call.keep_len + self.fed + max(len(self.tokens) - 1, 0)

    @property
    def remaining(self) -> int:
        """Tokens still to feed: the rest of its own, or a run's last token."""
        return len(self.call.new_tokens) + len(self.call.draft_tokens) - self.fed or 1

    @property
    def window(self) -> int:
        """Its last tokens that go in one piece, scored: the draft window and the token before it."""
        return min(self.remaining, len(self.call.draft_tokens) + 1)


class TargetRunner:
    def __init__(self, lm: SessionLM, max_batch_tokens: int = MAX_BATCH_TOKENS):
        self.lm, self.max_batch_tokens = lm, max_batch_tokens

    def verify(self, call: VerifyCall) -> Verification:
        """One call to its end (every step of it), alone."""
        result = run_to_end(self.verify_batch, [call])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def verify_batch(self, calls: list[VerifyCall | Progress]) -> list[Verification | Exception | Continue]:
        """One step of every call (a new call, or one part-way); a call that cannot run gets its SessionError
        in its place, one not finished `Continue` with its progress."""
        return run_calls(calls, self.check, _forks, lambda c: self._verify_forked(c) if _forks(c) else self._step([c])[0],
                         self._step)

    def check(self, call: VerifyCall | Progress) -> None:
        """Raise SessionError if the call cannot run on its session: its tokens, then the positions a decoded
        run feeds back, must fit the model's context; a call part-way still has its session as it left it."""
        if isinstance(call, Progress):
            self.lm.check_keep(call.session_id, call.length)
            return
        self.lm.check_extend(call.session_id, call.keep_len, call.new_tokens + call.draft_tokens)
        held = call.keep_len + len(call.new_tokens) + call.decode_tokens - 1
        if held > self.lm.max_context:
            raise SessionError("decode_tokens", f"the run would hold {held} tokens, more than the model's context "
                                                f"of {self.lm.max_context}")

    @torch.inference_mode()
    def _step(self, calls: list[VerifyCall | Progress]) -> list[Verification | Continue]:
        """One forward over checked calls of distinct sessions (new, or part-way), packed: a chunk of a long
        prompt, a whole window, or a run's next position each; then the calls that finished are scored."""
        now = time.perf_counter()
        work = [call if isinstance(call, Progress) else Progress(call, now) for call in calls]
        sizes = chunk_sizes([p.remaining for p in work], [p.window for p in work], self.max_batch_tokens,
                            PREFILL_CHUNK_FLOOR)
        items, logits_of = [], []
        for p, size in zip(work, sizes, strict=True):
            own = p.call.new_tokens + p.call.draft_tokens
            if p.fed < len(own):  # the call's own tokens: a chunk, or the rest with its window scored
                items.append((p.session_id, p.length, own[p.fed: p.fed + size]))
                logits_of.append(p.window if size == p.remaining else 0)
            else:  # a run's next position: its last token fed back
                items.append((p.session_id, p.length, p.tokens[-1]))
                logits_of.append(1)
        layers = tuple(sorted({layer for p in work for layer in p.call.feature_layers}))
        logits, features = self.lm.extend_batch_features(items, layers, logits_of)
        fed = sum(sizes)
        results: list[Verification | Continue | None] = [None] * len(work)
        done = []
        for index, (p, size, rows, step_features) in enumerate(zip(work, sizes, logits, features, strict=True)):
            p.batch_tokens += fed
            if step_features is not None and p.call.feature_layers:
                p.features.append(own_features(p.call, step_features, layers))
            if p.fed < len(p.call.new_tokens) + len(p.call.draft_tokens):
                p.fed += size
                if not rows.shape[0]:  # a chunk of a prompt
                    results[index] = Continue(p)
                    continue
            if p.call.decode_tokens > 1:
                p.rows.append(rows)
                p.tokens.append(self._own_token(p, rows))
                if len(p.tokens) < p.call.decode_tokens:
                    results[index] = Continue(p)
                    continue
                rows = torch.cat(p.rows)
            done.append((index, p, rows))
        if done:
            finished = self._scores([p.call for _, p, _ in done], [rows for _, _, rows in done],
                                    [p.started for _, p, _ in done], len(work), [p.batch_tokens for _, p, _ in done],
                                    [torch.cat(p.tokens) if p.tokens else None for _, p, _ in done],
                                    [torch.cat(p.features) if p.features else None for _, p, _ in done])
            for (index, _, _), verification in zip(done, finished, strict=True):
                results[index] = verification
        return results

    def _own_token(self, p: Progress, rows: torch.Tensor) -> torch.Tensor:
        """A run's token [1] at its next position, from that position's logits [1, vocab]."""
        if p.call.statistics.recover and p.uniforms is None:  # copied to the device once a run
            p.uniforms = to_device(torch.tensor(p.call.uniforms, dtype=torch.float64), self.lm.device)
        step = len(p.tokens)
        return own_token(p.call, rows, p.uniforms[step: step + 1] if p.uniforms is not None else None)

    @torch.inference_mode()
    def _verify_forked(self, call: VerifyCall) -> Verification:
        """M windows of one checked call, scored over a fork of the session's cache after the committed tokens."""
        started = time.perf_counter()
        sequences = call.num_draft_sequences  # M
        gamma = len(call.draft_tokens) // sequences
        first = self.lm.extend_batch([(call.session_id, call.keep_len, call.new_tokens)])[0][-1:]  # position 0
        windows = to_device(torch.tensor(call.draft_tokens).reshape(sequences, gamma), self.lm.device)
        rest = self.lm.extend_rows(self.lm.fork(call.session_id, sequences), windows)  # [M, gamma, vocab]
        logits = torch.cat([first.expand(sequences, 1, -1), rest], 1).reshape(sequences * (gamma + 1), -1)
        return self._scores([call], [logits], [started], sequences,
                            [len(call.new_tokens) + len(call.draft_tokens)])[0]

    def _scores(self, calls: list[VerifyCall], logits: list[torch.Tensor], started: list[float], batch_size: int,
                batch_tokens: list[int], decoded: list[torch.Tensor | None] | None = None,
                features: list[torch.Tensor | None] | None = None) -> list[Verification]:
        """Verifications from each call's logits [rows, vocab] on the device, its decoded run's tokens
        (None: not a run) and its features (None: not asked for): every argmax, decoded token, statistic,
        row and feature of the batch read back at once. `started`: when each call began; `batch_tokens`:
        the tokens of the forwards each took part in."""
        decoded = decoded or [None] * len(calls)
        features = features or [None] * len(calls)
        flat = torch.cat([rows.argmax(-1) for rows in logits] + [tokens for tokens in decoded if tokens is not None])
        windows = [statistics(call, rows) if tokens is None else None
                   for call, rows, tokens in zip(calls, logits, decoded, strict=True)]
        probs = [wire_precision(warped_probs(rows, call.sampling)) if call.want_probs else None
                 for call, rows in zip(calls, logits, strict=True)]
        host = iter(to_host([flat, *[part for window in windows if window is not None for part in window.parts()],
                             *[rows for rows in probs if rows is not None],
                             *[rows for rows in features if rows is not None]]))
        read = iter(next(host).tolist())
        argmax = [[next(read) for _ in range(rows.shape[0])] for rows in logits]
        own = [[next(read) for _ in range(len(tokens))] if tokens is not None else [] for tokens in decoded]
        windows = [WindowStatistics(*(next(host) for _ in window.parts())) if window is not None else None
                   for window in windows]
        probs = [next(host) if rows is not None else None for rows in probs]
        features = [FeatureRows(call.keep_len, next(host)) if rows is not None else None
                    for call, rows in zip(calls, features, strict=True)]
        now = time.perf_counter()  # the statistics and rows are the target's work too
        return [Verification(target_argmax=row_argmax, target_probs=rows, cache_len=self.lm.cache_len(call.session_id),
                             compute_seconds=now - call_started, batch_size=batch_size, batch_tokens=call_tokens,
                             statistics=run_statistics(call, call_own) if tokens is not None else window,
                             decoded_tokens=call_own, features=call_features)
                for call, row_argmax, call_own, tokens, window, rows, call_features, call_started, call_tokens in zip(
                    calls, argmax, own, decoded, windows, probs, features, started, batch_tokens, strict=True)]


def own_features(call: VerifyCall, features: torch.Tensor | None, layers: tuple[int, ...]) -> torch.Tensor | None:
    """The call's own layers' columns of features [rows, len(layers) x hidden] computed for the batch's
    `layers` (None: the call asked for none)."""
    if not call.feature_layers or features is None:
        return None
    if call.feature_layers == layers:
        return features
    chunks = features.split(features.shape[-1] // len(layers), -1)
    return torch.cat([chunks[layers.index(layer)] for layer in call.feature_layers], -1)


def own_token(call: VerifyCall, logits: torch.Tensor, uniform: torch.Tensor | None) -> torch.Tensor:
    """The target's own token [1] at one position of a decoded run, from its logits [1, vocab]: the candidate
    at the position's uniform [1] (`scoring.inverse_cdf` over the warped distribution, as its statistics
    draw it), or the argmax when the call's rule draws no candidates (uniform None)."""
    if uniform is None:
        return logits.argmax(-1)
    return inverse_cdf(warped_probs(logits, call.sampling), uniform)


def run_statistics(call: VerifyCall, tokens: list[int]) -> WindowStatistics | None:
    """A decoded run's statistics: no draft tokens to score, and each position's candidate is its token."""
    if call.statistics == StatisticsSpec():
        return None
    empty = torch.empty(0)
    candidates = torch.tensor(tokens, dtype=torch.long) if call.statistics.recover else torch.empty(0, dtype=torch.long)
    return WindowStatistics(empty, candidates, empty, empty)


def statistics(call: VerifyCall, logits: torch.Tensor) -> WindowStatistics | None:
    """What the call's rule needs of one window's logits [gamma + 1, vocab]; None when it asked for nothing."""
    spec = call.statistics
    if spec == StatisticsSpec() or call.num_draft_sequences > 1:
        return None
    device = logits.device
    target_probs = warped_probs(logits, call.sampling)
    draft_rows = call.draft_probs.dense(device) if call.draft_probs is not None else None
    raw_target = raw_draft = None
    if spec.divergence_on_raw and not call.sampling.is_identity:
        raw_target = torch.softmax(logits.float(), -1)
        raw_draft = call.draft_raw_probs.dense(device) if call.draft_raw_probs is not None else None
    draft_tokens = to_device(torch.tensor(call.draft_tokens, dtype=torch.long), device)
    uniforms = to_device(torch.tensor(call.uniforms, dtype=torch.float64), device)
    return window_statistics(spec, target_probs, draft_tokens, uniforms, draft_rows, raw_target, raw_draft)

"""The target model runner: score windows of draft tokens, for several sessions in one forward pass.

Knows the model runtime and the warps, not gRPC or acceptance rules. Position i of a window is the
target's next-token distribution after the committed tokens and the window's first i draft tokens.
Returns the gamma + 1 argmaxes of every window and, for one window, the statistics its call asked for
(`specdec.distributions.scoring`: the target's probability of each draft token, candidate next tokens drawn at
the caller's uniforms, entropies, divergences); whole warped rows (in wire precision) only on request.
Calls of different sessions are scored as one batch; a call with M windows is scored as one batch over a
fork of its session's cache, and its session keeps only the committed tokens. A call without draft tokens
may ask for a decoded run (`decode_tokens` > 1): the target feeds back its own token at each position (the
candidate at the caller's uniform, or the argmax) and scores the next, all on the device, the run calls of
a batch in lockstep, so a target-only request costs one call per run instead of one per token. Scores
are computed on the model's device; the host reads a whole batch's results (argmaxes, decoded tokens,
statistics, rows) back at once, through pinned memory on CUDA.
"""

from __future__ import annotations

import time

import torch

from specdec.distributions.scoring import StatisticsSpec, WindowStatistics, inverse_cdf, window_statistics
from specdec.distributions.warps import warped_probs
from specdec.errors import SessionError
from specdec.services.runtime.batcher import run_calls
from specdec.services.runtime.model import SessionLM
from specdec.services.runtime.transfer import to_device, to_host
from specdec.types import FeatureRows, Verification, VerifyCall
from specdec.wire.encoding import wire_precision


def _forks(call: VerifyCall) -> bool:
    """Whether the call's windows are scored over a fork (M > 1 windows of draft tokens)."""
    return call.num_draft_sequences > 1 and bool(call.draft_tokens)


class TargetRunner:
    def __init__(self, lm: SessionLM):
        self.lm = lm

    def verify(self, call: VerifyCall) -> Verification:
        result = self.verify_batch([call])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def verify_batch(self, calls: list[VerifyCall]) -> list[Verification | Exception]:
        """Score every call; a call that cannot run gets its SessionError in its place."""
        return run_calls(
            calls, self.check, _forks, lambda c: self._verify_forked(c) if _forks(c) else self._verify_together([c])[0],
            self._verify_together)

    def check(self, call: VerifyCall) -> None:
        """Raise SessionError if the call cannot run on its session: its tokens, then the positions a decoded
        run feeds back, must fit the model's context."""
        self.lm.check_extend(call.session_id, call.keep_len, call.new_tokens + call.draft_tokens)
        held = call.keep_len + len(call.new_tokens) + call.decode_tokens - 1
        if held > self.lm.max_context:
            raise SessionError("decode_tokens", f"the run would hold {held} tokens, more than the model's context "
                                                f"of {self.lm.max_context}")

    @torch.inference_mode()
    def _verify_together(self, calls: list[VerifyCall]) -> list[Verification]:
        """Checked calls of distinct sessions, one window (or one decoded run) each, scored in one batched
        extend, then the runs' further positions in lockstep."""
        started = time.perf_counter()
        items = [(call.session_id, call.keep_len, call.new_tokens + call.draft_tokens) for call in calls]
        layers = tuple(sorted({layer for call in calls for layer in call.feature_layers}))
        all_logits, features = self.lm.extend_batch_features(items, layers)
        logits = [rows[-(len(call.draft_tokens) + 1):] for call, rows in zip(calls, all_logits, strict=True)]
        runs = [index for index, call in enumerate(calls) if call.decode_tokens > 1]
        decoded: list[torch.Tensor | None] = [None] * len(calls)
        if runs:
            for index, (rows, tokens, run_features) in zip(
                    runs, self._decode([calls[i] for i in runs], [logits[i] for i in runs], layers), strict=True):
                logits[index], decoded[index] = rows, tokens
                if run_features is not None:
                    features[index] = torch.cat((features[index], run_features))
        fed = sum(len(tokens) for _, _, tokens in items) + sum(calls[i].decode_tokens - 1 for i in runs)
        features = [own_features(call, rows, layers) for call, rows in zip(calls, features, strict=True)]
        return self._scores(calls, logits, started, len(items), fed, decoded, features)

    def _decode(self, calls: list[VerifyCall], first: list[torch.Tensor], layers: tuple[int, ...] = ()
                ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Decoded runs from each call's first position's logits [1, vocab]: per call its logits
        [decode_tokens, vocab], its tokens [decode_tokens], the tokens fed back one position at a time
        (every call still running in one forward), and with `layers` the features of the tokens fed back
        [decode_tokens - 1, width], all on the device."""
        logits = [[rows] for rows in first]
        fed_features: list[list[torch.Tensor]] = [[] for _ in calls]
        tokens: list[list[torch.Tensor]] = [[] for _ in calls]
        uniforms = [to_device(torch.tensor(call.uniforms, dtype=torch.float64), self.lm.device)
                    if call.statistics.recover else None for call in calls]  # copied to the device once a run
        active, rows = list(range(len(calls))), None
        while active:
            for index in active:
                step = len(tokens[index])
                uniform = uniforms[index][step: step + 1] if uniforms[index] is not None else None
                tokens[index].append(own_token(calls[index], logits[index][-1], uniform))
            still = [index for index in active if len(tokens[index]) < calls[index].decode_tokens]
            if not still:
                break
            if rows is None or len(still) < len(active):
                rows = self.lm.rows([calls[index].session_id for index in still])
            out, step_features = self.lm.extend_rows_features(
                rows, torch.cat([tokens[index][-1] for index in still])[:, None], layers)
            for row_index, (index, row) in enumerate(zip(still, out[:, -1].split(1), strict=True)):
                logits[index].append(row)
                if step_features is not None:
                    fed_features[index].append(step_features[row_index])
            active = still
        return [(torch.cat(rows), torch.cat(picked), torch.cat(fed) if fed else None)
                for rows, picked, fed in zip(logits, tokens, fed_features, strict=True)]

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
        return self._scores([call], [logits], started, sequences, len(call.new_tokens) + len(call.draft_tokens))[0]

    def _scores(self, calls: list[VerifyCall], logits: list[torch.Tensor], started: float, batch_size: int,
                batch_tokens: int, decoded: list[torch.Tensor | None] | None = None,
                features: list[torch.Tensor | None] | None = None) -> list[Verification]:
        """Verifications from each call's logits [rows, vocab] on the device, its decoded run's tokens
        (None: not a run) and its features (None: not asked for): every argmax, decoded token, statistic,
        row and feature of the batch read back at once."""
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
        seconds = time.perf_counter() - started  # the statistics and rows are the target's work too
        return [Verification(target_argmax=row_argmax, target_probs=rows, cache_len=self.lm.cache_len(call.session_id),
                             compute_seconds=seconds, batch_size=batch_size, batch_tokens=batch_tokens,
                             statistics=run_statistics(call, call_own) if tokens is not None else window,
                             decoded_tokens=call_own, features=call_features)
                for call, row_argmax, call_own, tokens, window, rows, call_features in zip(
                    calls, argmax, own, decoded, windows, probs, features, strict=True)]


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

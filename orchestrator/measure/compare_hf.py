"""`specdec bench --compare-hf`: specdec through the serving system against the Hugging Face baselines a user
would run instead, and against the serial ideal, on one pair, one prompt set and one token count, in one run.

The arithmetic (where a round's time goes, the ideals of docs/design.md's performance model, the headline ratios)
is pure functions over totals; `run_compare` is the only part that decodes anything. This module knows
specdec's request stats (as sums in a `BenchRow`) and the HF baselines' totals (an `HFRow`); it does not
know how either system decodes.

Per-round breakdown (ms per round, from the stats of RequestStats):
  draft model = draft_seconds, target model = verify_seconds (model time inside the services);
  transport = draft_call_seconds + verify_call_seconds - draft_seconds - verify_seconds (the calls' wall
  time less model time: RPC, encoding, the services' own Python);
  waiting = wait_seconds (overlapped: waiting for the draft after the verify answered);
  orchestrator = seconds - draft_call_seconds - verify_call_seconds - wait_seconds (the rule, the
  controller, the orchestrator's bookkeeping, streaming to the client).
The five add up to the request's wall time per round. In overlapped mode part of the drafting runs under
the verify call, so there `draft model` includes hidden time and `transport` is understated by it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.progress import Progress

from specdec.demo_pair.heldout import CodePrompt
from specdec.orchestrator.client.grpc_client import Client
from specdec.orchestrator.measure import process_times
from specdec.orchestrator.measure.bench import BenchConfig, BenchRow, run_config
from specdec.orchestrator.measure.hf_baseline import BareForwards, HFConfig, HFPair, HFRow, hf_configs, run_hf

TEMPERATURES = (0.0, 1.0)
HF_THREADS = (1, 2)
HF_GENERATE = "HF generate()"
BARE_TARGET = "bare target, 1 token a forward"
WITH_PREFILL = "with prefill"  # the ideal as a whole request: the prompt's prefill (bare, this process) included
OVERLAPPED_IDEAL = "overlapped ideal"
SERVICE_TIMES = "model times in the services"  # a further draft's ideal: no bare forwards of it in this process


@dataclass(frozen=True)
class RoundBreakdown:
    """Milliseconds per round; the first five add up to `round_ms`."""

    draft_model_ms: float
    target_model_ms: float
    transport_ms: float
    waiting_ms: float
    orchestrator_ms: float
    round_ms: float


def round_breakdown(row: BenchRow) -> RoundBreakdown:
    """Where a row's wall time went, per round (see the module docstring for each term)."""
    t = row.totals
    if not t.num_rounds:
        return RoundBreakdown(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    per_round = 1000 / t.num_rounds
    calls = t.draft_call_seconds + t.verify_call_seconds
    return RoundBreakdown(
        draft_model_ms=t.draft_seconds * per_round,
        target_model_ms=t.verify_seconds * per_round,
        transport_ms=(calls - t.draft_seconds - t.verify_seconds) * per_round,
        waiting_ms=t.wait_seconds * per_round,
        orchestrator_ms=(t.seconds - calls - t.wait_seconds) * per_round,
        round_ms=t.seconds * per_round)


def expected_tokens_per_round(num_accepted_tokens_per_pos: list[int], num_drafts: int) -> float:
    """1 + sum_k prod_{i<=k} alpha_i with the measured conditional rates alpha_k = accepted at position k /
    accepted at position k-1 (drafts at position 0). The product telescopes, so this is exactly
    1 + sum(accepted per position) / drafts: the measured mean acceptance length."""
    if not num_drafts:
        return 1.0
    expected, reached = 1.0, 1.0
    previous = num_drafts
    for accepted in num_accepted_tokens_per_pos:
        reached *= accepted / previous if previous else 0.0
        expected += reached
        previous = accepted
    return expected


def serial_ideal_tokens_per_second(tokens_per_round: float, gamma: int, draft_seconds: float,
                                   verify_seconds: float) -> float:
    """Serial round with no overhead: gamma draft forwards of 1 token, then one target forward of gamma + 1."""
    return tokens_per_round / (gamma * draft_seconds + verify_seconds)


def overlapped_ideal_tokens_per_second(tokens_per_round: float, gamma: int, draft_seconds: float,
                                       verify_seconds: float) -> float:
    """Perfect overlap and no overhead: a round costs max(verify, gamma x draft) (docs/design.md, Performance model)."""
    return tokens_per_round / max(verify_seconds, gamma * draft_seconds)


def with_prefill(tokens_per_second: float, tokens_per_request: int, prefill_seconds: float) -> float:
    """An ideal's tokens/s once each request also pays its prompt's prefill, as every measured system does."""
    if tokens_per_second <= 0 or tokens_per_request <= 0:
        return 0.0
    return tokens_per_request / (tokens_per_request / tokens_per_second + prefill_seconds)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True)
class Figure:
    """One tokens/s figure of the comparison: measured (specdec, HF) or computed (ideal, bare)."""

    system: str  # specdec | HF | ideal
    label: str
    temperature: float
    tokens_per_second: float
    note: str = ""  # threads of the HF best, gamma of an ideal, ...


@dataclass(frozen=True)
class Ratio:
    name: str
    numerator: str
    denominator: str
    value: float


SPECULATION_LANES = 8  # the overlapped rows' lanes (the demo config's default)


def specdec_configs(gamma: int, draft: str = "") -> list[BenchConfig]:
    """The rows of the deployment's own draft: target-only, then sd serial, overlapped with the speculation cache,
    the server's default configuration (overlap "auto" in the demo config) and the cost controller; with `draft`
    (a further draft's name, e.g. "head"), the speculative rows of a deployment with that draft, labelled with
    it (the target-only row is the first deployment's)."""
    suffix = f", {draft}" if draft else ""
    rows = [] if draft else [BenchConfig("specdec target-only", "baseline", "sd", 0)]
    return rows + [
        BenchConfig(f"specdec sd gamma={gamma} serial{suffix}", "fixed", "sd", gamma, draft=draft),
        BenchConfig(f"specdec sd gamma={gamma} overlapped, {SPECULATION_LANES} lanes{suffix}", "overlap", "sd", gamma,
                    overlap=True, speculation_lanes=SPECULATION_LANES, draft=draft),
        BenchConfig(f"specdec default config, sd gamma={gamma}{suffix}", "default", "sd", gamma, overlap=None,
                    speculation_lanes=None, draft=draft),
        BenchConfig(f"specdec sd cost controller{suffix}", "controller", "sd", gamma, controller="cost", draft=draft)]


def best_hf(rows: list[HFRow]) -> dict[tuple[str, float], HFRow]:
    """The faster thread count of each (configuration, temperature)."""
    best: dict[tuple[str, float], HFRow] = {}
    for row in rows:
        key = (row.config.label, row.temperature)
        if key not in best or row.tokens_per_second > best[key].tokens_per_second:
            best[key] = row
    return best


@dataclass
class Comparison:
    """Everything one `--compare-hf` run measured."""

    gamma: int
    bare: BareForwards
    specdec: dict[float, list[BenchRow]]  # temperature -> rows in `specdec_configs` order, then further drafts'
    hf: list[HFRow]  # every configuration x temperature x thread count
    max_new_tokens: int = 0  # tokens per request (the bench ignores end-of-text); 0: no ideals with prefill

    def hf_best(self) -> dict[tuple[str, float], HFRow]:
        return best_hf(self.hf)

    def serial_row(self, temperature: float) -> BenchRow:
        return next(r for r in self.specdec[temperature] if r.config.group == "fixed")

    def tokens_per_round(self, temperature: float) -> float:
        serial = self.serial_row(temperature).totals
        return expected_tokens_per_round(serial.num_accepted_tokens_per_pos, serial.num_drafts)

    def figures(self) -> list[Figure]:
        out: list[Figure] = []
        best = self.hf_best()
        for temperature, rows in self.specdec.items():
            out += [Figure("HF", label, temp, row.tokens_per_second, f"{row.threads} thread(s)")
                    for (label, temp), row in best.items() if temp == temperature]
            out += [Figure("specdec", row.config.label.removeprefix("specdec "), temperature,
                           row.totals.tokens_per_second,
                           f"mean acc. len {row.totals.mean_acceptance_length:.2f}" if row.config.gamma else "")
                    for row in rows]
            expected = self.tokens_per_round(temperature)
            args = (expected, self.gamma, self.bare.draft_1, self.bare.target_verify)
            note = f"{expected:.2f} tokens/round (serial sd's)"
            serial_ideal = serial_ideal_tokens_per_second(*args)
            for serial in (r for r in rows if r.config.group == "fixed" and r.config.draft):
                t = serial.totals  # a further draft: no bare forwards here, the model times in its services
                expected = expected_tokens_per_round(t.num_accepted_tokens_per_pos, t.num_drafts)
                out.append(Figure("ideal", f"{OVERLAPPED_IDEAL} gamma={self.gamma}, {serial.config.draft} "
                                           f"({SERVICE_TIMES})", temperature,
                                  overlapped_ideal_tokens_per_second(expected, self.gamma, t.draft_ms_per_token / 1000,
                                                                     t.verify_ms_per_forward / 1000),
                                  f"{expected:.2f} tokens/round (its serial sd's)"))
            out += [Figure("ideal", f"serial ideal gamma={self.gamma}", temperature, serial_ideal, note),
                    Figure("ideal", f"overlapped ideal gamma={self.gamma}", temperature,
                           overlapped_ideal_tokens_per_second(*args), note),
                    Figure("ideal", BARE_TARGET, temperature, ratio(1.0, self.bare.target_1))]
            if self.max_new_tokens and self.bare.target_prefill:
                prefills = self.bare.target_prefill + self.bare.draft_prefill
                note = f"{1000 * self.bare.target_prefill:.0f} + {1000 * self.bare.draft_prefill:.0f} ms a request"
                out += [Figure("ideal", f"serial ideal gamma={self.gamma} {WITH_PREFILL}", temperature,
                               with_prefill(serial_ideal, self.max_new_tokens, prefills), note),
                        Figure("ideal", f"{BARE_TARGET} {WITH_PREFILL}", temperature,
                               with_prefill(ratio(1.0, self.bare.target_1), self.max_new_tokens,
                                            self.bare.target_prefill))]
        return out

    def ratios(self) -> list[Ratio]:
        return headline_ratios(self.figures(), self.specdec, self.bare)


def headline_ratios(figures: list[Figure], specdec: dict[float, list[BenchRow]], bare: BareForwards) -> list[Ratio]:
    """The comparisons a reader asks for first; every figure comes from the same run."""
    def tps(system: str, label: str, temperature: float) -> float:
        return next(f.tokens_per_second for f in figures
                    if f.system == system and f.label == label and f.temperature == temperature)

    def best(system: str, temperature: float, keep: Callable[[str], bool]) -> Figure:
        return max((f for f in figures if f.system == system and f.temperature == temperature and keep(f.label)),
                   key=lambda f: f.tokens_per_second)

    hf_generate = HF_GENERATE

    def speculative(label: str) -> bool:
        return not label.startswith("target-only")

    out: list[Ratio] = []
    for temperature, rows in specdec.items():
        name = "greedy" if temperature == 0 else f"T={temperature:g}"
        target_only = next(r for r in rows if not r.config.gamma)
        serial = next(r for r in rows if r.config.group == "fixed")
        overlapped = next(r for r in rows if r.config.group == "overlap")
        gamma = serial.config.gamma
        own = target_only.config.label.removeprefix("specdec ")
        fastest = best("specdec", temperature, speculative)
        assisted = best("HF", temperature, lambda label: label != HF_GENERATE)
        out += [
            Ratio(f"{name}: specdec target-only / HF generate()", own, hf_generate,
                  ratio(tps("specdec", own, temperature), tps("HF", hf_generate, temperature))),
            Ratio(f"{name}: specdec target-only / bare target forwards", own, BARE_TARGET,
                  ratio(tps("specdec", own, temperature), tps("ideal", BARE_TARGET, temperature))),
            Ratio(f"{name}: specdec serial sd / serial ideal", serial.config.label.removeprefix("specdec "),
                  f"serial ideal gamma={gamma}",
                  ratio(serial.totals.tokens_per_second, tps("ideal", f"serial ideal gamma={gamma}", temperature))),
            Ratio(f"{name}: specdec overlapped sd / overlapped ideal", overlapped.config.label.removeprefix("specdec "),
                  f"overlapped ideal gamma={gamma}",
                  ratio(overlapped.totals.tokens_per_second,
                        tps("ideal", f"overlapped ideal gamma={gamma}", temperature))),
            Ratio(f"{name}: best specdec speculative / best HF assisted", fastest.label, assisted.label,
                  ratio(fastest.tokens_per_second, assisted.tokens_per_second)),
            Ratio(f"{name}: best specdec speculative / HF generate()", fastest.label, hf_generate,
                  ratio(fastest.tokens_per_second, tps("HF", hf_generate, temperature))),
            Ratio(f"{name}: best HF assisted / HF generate()", assisted.label, hf_generate,
                  ratio(assisted.tokens_per_second, tps("HF", hf_generate, temperature))),
        ]
        for ahead in (r for r in rows if r.config.group == "overlap"):
            same_draft = next(r for r in rows if r.config.group == "fixed" and r.config.draft == ahead.config.draft)
            labels = [row.config.label.removeprefix("specdec ") for row in (ahead, same_draft)]
            out.append(Ratio(f"{name}: overlapped / serial, {ahead.config.draft or 'own draft'}", *labels,
                             ratio(ahead.totals.tokens_per_second, same_draft.totals.tokens_per_second)))
            if ahead.config.draft:
                ideal = f"{OVERLAPPED_IDEAL} gamma={gamma}, {ahead.config.draft} ({SERVICE_TIMES})"
                out.append(Ratio(f"{name}: overlapped / overlapped ideal, {ahead.config.draft}", labels[0], ideal,
                                 ratio(ahead.totals.tokens_per_second, tps("ideal", ideal, temperature))))
        out += [Ratio(f"{name}: {r.config.label.removeprefix('specdec ')} / best HF assisted",
                      r.config.label.removeprefix("specdec "), assisted.label,
                      ratio(r.totals.tokens_per_second, assisted.tokens_per_second))
                for r in rows if r.config.group == "default"]
        out += [Ratio(f"{name}: {r.config.label.removeprefix('specdec ')} / own target-only",
                      r.config.label.removeprefix("specdec "), own, ratio(r.totals.tokens_per_second,
                                                                          target_only.totals.tokens_per_second))
                for r in rows if r.config.gamma]
        serial_label = serial.config.label.removeprefix("specdec ")
        with_prefills = [(own, BARE_TARGET), (serial_label, f"serial ideal gamma={gamma}")]
        out += [Ratio(f"{name}: {label} / {ideal} {WITH_PREFILL}", label, f"{ideal} {WITH_PREFILL}",
                      ratio(tps("specdec", label, temperature), tps("ideal", f"{ideal} {WITH_PREFILL}", temperature)))
                for label, ideal in with_prefills if any(f.label == f"{ideal} {WITH_PREFILL}" for f in figures)]
        out += [Ratio(f"{name}: draft model time per forward, through the system / bare", serial_label,
                      "bare draft forward", ratio(serial.totals.draft_ms_per_token / 1000, bare.draft_1)),
                Ratio(f"{name}: draft call time per drafted token / bare draft forward", serial_label,
                      "bare draft forward",
                      ratio(serial.totals.draft_call_seconds / max(1, serial.totals.num_draft_tokens), bare.draft_1)),
                Ratio(f"{name}: target model time per verify forward / bare gamma+1 forward", serial_label,
                      "bare target verify forward",
                      ratio(serial.totals.verify_ms_per_forward / 1000, bare.target_verify))]
    return out


def run_hf_configs(pair: HFPair, prompts: list[str], configs: list[HFConfig], max_new_tokens: int,
                   temperature: float, seed: int, progress: Progress,
                   threads: tuple[int, ...] = HF_THREADS) -> list[HFRow]:
    """Every configuration at every thread count, one prompt at a time."""
    rows = []
    for config in configs:
        for count in threads:
            task = progress.add_task(f"{config.label} T={temperature:g}, {count} thread(s)", total=len(prompts))
            rows.append(run_hf(pair, prompts, config, max_new_tokens, temperature, count, seed,
                               lambda t=task: progress.advance(t)))
            progress.remove_task(task)
    return rows


def run_specdec(client: Client, prompts: list[CodePrompt], configs: list[BenchConfig], max_new_tokens: int,
                seed: int, progress: Progress) -> dict[float, list[BenchRow]]:
    """Every configuration on one deployment at both temperatures, after a warm-up (the services' first
    requests pay for lazy set-up)."""
    texts = [p.prompt for p in prompts]
    for gamma in dict.fromkeys((0, *(config.gamma for config in configs))):
        client.generate(texts[0], max_new_tokens=8, gamma=gamma, temperature=0.0, ignore_eos=True)
    return {temperature: [run_timed(client, prompts, config, max_new_tokens, temperature, seed, progress)
                          for config in configs]
            for temperature in TEMPERATURES}


def run_timed(client: Client, prompts: list[CodePrompt], config: BenchConfig, max_new_tokens: int,
              temperature: float, seed: int, progress: Progress) -> BenchRow:
    """`run_config`, with the share of a core each local process of the deployment spent meanwhile."""
    before, started = process_times.snapshot(), time.perf_counter()
    row = run_config(client, prompts, config, max_new_tokens, temperature, seed, progress)
    row.core_shares = process_times.core_shares(before, process_times.snapshot(), time.perf_counter() - started,
                                                os.getpid())
    return row


def run_hf_rows(pair: HFPair, prompts: list[CodePrompt], gamma: int, max_new_tokens: int, seed: int,
                progress: Progress, threads: tuple[int, ...] = HF_THREADS) -> list[HFRow]:
    """Hugging Face generate() and assisted generation (with the pair's standalone draft: HF has no feature-head
    path) at both temperatures."""
    texts = [p.prompt for p in prompts]
    return [row for temperature in TEMPERATURES
            for row in run_hf_configs(pair, texts, hf_configs(gamma), max_new_tokens, temperature, seed, progress,
                                      threads)]


def run_compare(client: Client, pair: HFPair, prompts: list[CodePrompt], gamma: int, max_new_tokens: int,
                seed: int, progress: Progress, bare: BareForwards,
                threads: tuple[int, ...] = HF_THREADS) -> Comparison:
    """Decode every prompt with every specdec configuration of one deployment and every HF baseline (at each of
    `threads`), at both temperatures."""
    specdec = run_specdec(client, prompts, specdec_configs(gamma), max_new_tokens, seed, progress)
    return Comparison(gamma, bare, specdec, run_hf_rows(pair, prompts, gamma, max_new_tokens, seed, progress, threads),
                      max_new_tokens)

"""`specdec bench`: sweep acceptance rules, thresholds, gamma controllers and gamma over held-out code
prompts on one deployment, and measure what each buys in speed and costs in quality.

Every configuration decodes the same prompts with the same seeds, one request at a time, in one run;
speedups are against target-only decoding (gamma = 0) measured in that same run.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, fields

from rich.progress import Progress

from specdec.demo_pair.heldout import CodePrompt
from specdec.orchestrator.client.grpc_client import Client
from specdec.orchestrator.measure.quality import TargetScorer, exact_line_match, token_accuracy
from specdec.orchestrator.round.stats import IDENTITY_FIELDS, RequestStats


@dataclass(frozen=True)
class BenchConfig:
    label: str
    group: str  # baseline | fixed | controller | fsd | opt | uno | typical | multi_draft
    rule: str
    gamma: int | None  # None: the server's default
    controller: str = "fixed"
    rule_params: dict = field(default_factory=dict)
    num_draft_sequences: int = 1
    overlap: bool | None = False  # None: the server's default
    speculation_lanes: int | None = 0  # None: the server's default
    draft: str = ""  # a further draft's name (its own deployment), "" for the deployment's own


@dataclass
class BenchRow:
    """One configuration over all prompts: the requests' statistics merged (`totals`), and the quality of their
    output. A row reads as its totals: `row.output_tokens` is `row.totals.output_tokens`, and so on for every
    field and rate of `RequestStats`."""

    config: BenchConfig
    totals: RequestStats = field(default_factory=lambda: RequestStats(request_id="", rule="", gamma=0,
                                                                       prompt_tokens=0))
    exact_lines: int = 0
    token_accuracy_sum: float = 0.0
    loglik_sum: float = 0.0
    prompts: int = 0
    gamma_trace: list[int] = field(default_factory=list)  # the first prompt's
    outputs: list[list[int]] = field(default_factory=list)
    speedup: float = 0.0  # filled against the baseline row
    core_shares: dict[str, float] = field(default_factory=dict)  # role -> share of a core (`process_times`)

    def __getattr__(self, name: str):
        if name == "totals":  # not set yet (a copy being made): no totals to read through
            raise AttributeError(name)
        return getattr(self.totals, name)

    def add(self, stats: dict, token_ids: list[int]) -> None:
        """Add one request's stats (the dict a Client returns)."""
        request = RequestStats.from_dict(stats)
        self.totals.merge(request)
        if not self.outputs:
            self.gamma_trace = list(request.gamma_trace)
        self.outputs.append(token_ids)
        self.prompts += 1

    @property
    def efficiency(self) -> float:
        """Measured tokens/s over the overlapped ideal (docs/design.md, Performance model):
        tokens per round / max(verify, gamma x draft time)."""
        t = self.totals
        if not t.num_rounds or not t.seconds:
            return 0.0
        ideal_round = max(t.verify_seconds / t.num_rounds,
                          t.num_draft_tokens / t.num_rounds * t.draft_ms_per_token / 1000)
        return t.tokens_per_second / ((t.output_tokens / t.num_rounds) / ideal_round) if ideal_round else 0.0

    @property
    def exact_line_match(self) -> float:
        return self.exact_lines / self.prompts if self.prompts else 0.0

    @property
    def token_accuracy(self) -> float:
        return self.token_accuracy_sum / self.prompts if self.prompts else 0.0

    @property
    def target_loglik(self) -> float:
        return self.loglik_sum / self.prompts if self.prompts else 0.0

    def record(self) -> dict:
        """One CSV row: the configuration, the totals and their derived rates, the quality figures."""
        t = self.totals
        counters = {f.name: getattr(t, f.name) for f in fields(t) if f.name not in IDENTITY_FIELDS}
        derived = {name: getattr(t, name) for name in ("tokens_per_second", "acceptance_rate", "mean_acceptance_length",
                                                       "draft_ms_per_token", "verify_ms_per_forward")}
        out = asdict(self.config) | counters | derived
        for name in ("exact_lines", "token_accuracy_sum", "loglik_sum", "prompts", "speedup", "efficiency",
                     "exact_line_match", "token_accuracy", "target_loglik"):
            out[name] = getattr(self, name)
        out["gamma_trace"] = " ".join(map(str, self.gamma_trace))
        out["num_accepted_tokens_per_pos"] = " ".join(map(str, t.num_accepted_tokens_per_pos))
        out["rule_params"] = " ".join(f"{k}={v}" for k, v in self.config.rule_params.items())
        return out


def run_config(client: Client, prompts: list[CodePrompt], config: BenchConfig, max_new_tokens: int,
               temperature: float, seed: int, progress: Progress, scorer: TargetScorer | None = None) -> BenchRow:
    """Decode every prompt under one configuration, one request at a time; score quality when given a scorer."""
    row = BenchRow(config)
    task = progress.add_task(config.label, total=len(prompts))
    for index, prompt in enumerate(prompts):
        out = client.generate(prompt.prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                              rule=config.rule, gamma=config.gamma, gamma_controller=config.controller,
                              rule_params=config.rule_params, num_draft_sequences=config.num_draft_sequences,
                              seed=seed + index,
                              overlap=config.overlap, speculation_lanes=config.speculation_lanes,
                              ignore_eos=True)
        row.add(out.stats, out.token_ids)
        if scorer is not None:
            prompt_ids = scorer.encode(prompt.prompt)
            row.exact_lines += exact_line_match(out.text, prompt.continuation)
            row.token_accuracy_sum += token_accuracy(out.token_ids, scorer.encode(prompt.continuation))
            row.loglik_sum += scorer.mean_loglik(prompt_ids, out.token_ids)
        progress.advance(task)
    progress.remove_task(task)
    return row


def build_sweep(gammas: list[int], gamma: int, controllers: list[str], divergences: list[str],
                thresholds: list[float], epsilons: list[float], num_draft_sequences: list[int]) -> list[BenchConfig]:
    """The default grid: rules x thresholds x controllers x gamma, each around the sd baseline at `gamma`."""
    sweep = [BenchConfig("target-only", "baseline", "sd", 0)]
    sweep += [BenchConfig(f"sd gamma={g}", "fixed", "sd", g) for g in gammas]
    sweep.append(BenchConfig(f"sd gamma={gamma} overlapped", "overlap", "sd", gamma, overlap=True))
    sweep.append(BenchConfig(f"sd gamma={gamma} overlapped, 2 lanes", "overlap", "sd", gamma, overlap=True,
                             speculation_lanes=2))
    sweep += [BenchConfig(f"sd {c}", "controller", "sd", gamma, controller=c) for c in controllers]
    sweep += [BenchConfig(f"fsd {d} T={t:g}", "fsd", "fsd", gamma, rule_params={"divergence": d, "threshold": t})
              for d in divergences for t in thresholds]
    for rule in ("opt", "uno"):
        sweep += [BenchConfig(f"{rule} eps={e:g}", rule, rule, gamma, rule_params={"epsilon": e}) for e in epsilons]
    sweep.append(BenchConfig("typical", "typical", "typical", gamma))
    sweep += [BenchConfig(f"sd M={m}", "multi_draft", "sd", gamma, num_draft_sequences=m)
              for m in num_draft_sequences if m > 1]
    return sweep


def draft_sweep(draft: str, gammas: list[int], gamma: int, controllers: list[str]) -> list[BenchConfig]:
    """A further draft's rows (group "draft", labelled with it): `sd` at each fixed gamma and under each
    controller; the rules and the rest of the grid stay the deployment's own draft's."""
    return ([BenchConfig(f"{draft}: sd gamma={g}", "draft", "sd", g) for g in gammas]
            + [BenchConfig(f"{draft}: sd {c}", "draft", "sd", gamma, controller=c) for c in controllers])


def run_sweep(client: Client, prompts: list[CodePrompt], sweep: list[BenchConfig], scorer: TargetScorer,
              max_new_tokens: int, temperature: float, seed: int, progress: Progress,
              baseline: BenchRow | None = None) -> list[BenchRow]:
    """Every configuration of the sweep; speedups against `baseline` (default: the sweep's first row)."""
    overall = progress.add_task("configurations", total=len(sweep))
    rows = []
    for config in sweep:
        rows.append(run_config(client, prompts, config, max_new_tokens, temperature, seed, progress, scorer))
        progress.advance(overall)
    set_speedups(rows, baseline or rows[0])
    return rows


def set_speedups(rows: list[BenchRow], baseline: BenchRow) -> None:
    for row in rows:
        row.speedup = row.tokens_per_second / baseline.tokens_per_second if baseline.tokens_per_second else 0.0


@dataclass(frozen=True)
class Findings:
    """The headline comparisons of one bench run."""

    sd_gamma: int
    sd_tokens_per_second: float
    sd_token_accuracy: float
    best_fsd: str
    fsd_gain_within_2_points: float  # best fsd tokens/s over sd's at no more than 0.02 accuracy loss
    median_fixed_tokens_per_second: float
    best_fixed: str
    best_fixed_tokens_per_second: float
    controllers: dict[str, float]  # tokens/s
    opt_vs_uno: dict[str, dict[str, float]]  # epsilon -> figures


def findings(rows: list[BenchRow], gamma: int) -> Findings:
    by_label = {r.config.label: r for r in rows}
    sd = by_label.get(f"sd gamma={gamma}") or next(r for r in rows if r.config.group == "fixed")
    fsd_ok = [r for r in rows if r.config.group == "fsd" and r.token_accuracy >= sd.token_accuracy - 0.02]
    best_fsd = max(fsd_ok, key=lambda r: r.tokens_per_second, default=None)
    fixed = [r for r in rows if r.config.group == "fixed"]
    best_fixed = max(fixed, key=lambda r: r.tokens_per_second)
    opt_vs_uno = {}
    for row in rows:
        if row.config.group == "opt":
            eps = row.config.rule_params["epsilon"]
            uno = by_label.get(f"uno eps={eps:g}")
            if uno:
                opt_vs_uno[f"{eps:g}"] = {
                    "opt_tokens_per_second": row.tokens_per_second, "uno_tokens_per_second": uno.tokens_per_second,
                    "opt_loglik_drop": sd.target_loglik - row.target_loglik,
                    "uno_loglik_drop": sd.target_loglik - uno.target_loglik,
                    "opt_token_accuracy": row.token_accuracy, "uno_token_accuracy": uno.token_accuracy}
    return Findings(
        sd_gamma=sd.config.gamma, sd_tokens_per_second=sd.tokens_per_second, sd_token_accuracy=sd.token_accuracy,
        best_fsd=best_fsd.config.label if best_fsd else "",
        fsd_gain_within_2_points=best_fsd.tokens_per_second / sd.tokens_per_second if best_fsd else 0.0,
        median_fixed_tokens_per_second=statistics.median(r.tokens_per_second for r in fixed),
        best_fixed=best_fixed.config.label, best_fixed_tokens_per_second=best_fixed.tokens_per_second,
        controllers={r.config.label: r.tokens_per_second for r in rows if r.config.group == "controller"},
        opt_vs_uno=opt_vs_uno)

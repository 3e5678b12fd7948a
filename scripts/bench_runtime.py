"""Time the model runtime in-process on the demo pair, against the bare model forwards it wraps.

Figures (medians over repeats, one torch thread): a draft window of gamma tokens after a prompt of
`--prompt` tokens through `DraftRunner.propose` (one fed token plus gamma - 1 drafted ones: gamma
one-token forwards) and the same forwards called bare (`model(input_ids, cache=DynamicCache)`,
argmax between them); a target verify of gamma + 1 tokens after the prompt through `TargetRunner.verify`
and bare. Each repeat rolls the session (or the bare cache) back to the prompt. Uses only the runners'
public calls, so the same script times an older checkout (put it first on the path) side by side.

    .venv/bin/python scripts/bench_runtime.py --repeats 200
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
from collections.abc import Callable

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from specdec.config import resolve_model
from specdec.services.draft.runner import DraftRunner
from specdec.services.runtime.model import CausalLM, LoadSpec
from specdec.services.target.runner import TargetRunner
from specdec.types import ProposeCall, SamplingParams, VerifyCall


def interleaved_ms(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each run, taken in turn repeat by repeat so that the machine's drift hits all."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats + 10):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            if repeat >= 10:  # the first ten warm up
                times[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(samples) for name, samples in times.items()}


def bare(model_path: str, prompt: list[int], extra: list[int], one_at_a_time: bool) -> Callable[[], None]:
    """The bare forwards: a DynamicCache of the prompt, then `extra` fed one by one (argmax between) or at once."""
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    cache = DynamicCache(config=model.config)
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.inference_mode():
        model(input_ids=torch.tensor([prompt]), use_cache=True, **{name: cache})

    @torch.inference_mode()
    def run() -> None:
        if one_at_a_time:
            token = torch.tensor([[extra[0]]])
            for _ in extra:
                logits = model(input_ids=token, use_cache=True, **{name: cache}).logits
                token = logits[:, -1].argmax(-1, keepdim=True)
        else:
            model(input_ids=torch.tensor([extra]), use_cache=True, **{name: cache})
        cache.crop(-len(extra))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=100)
    parser.add_argument("--gamma", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    prompt = [(7 * i + 3) % 1000 + 5 for i in range(args.prompt)]
    window = [11, 12, 13, 14, 15, 16, 17, 18][: args.gamma]
    runs: dict[str, Callable[[], object]] = {}
    calls = iter(range(1, 10**9))
    for name, sampling in (("greedy", SamplingParams(temperature=0.0)), ("sampled", SamplingParams())):
        draft = DraftRunner(CausalLM(LoadSpec(resolve_model("demo:draft"))))
        draft.lm.extend("s", 0, prompt)
        runs[f"draft window ({name})"] = lambda draft=draft, sampling=sampling: draft.propose(ProposeCall(
            "s", next(calls), args.prompt, [window[0]], args.gamma, sampling, seed=1, want_probs=True))
        target = TargetRunner(CausalLM(LoadSpec(resolve_model("demo:target"))))
        target.lm.extend("s", 0, prompt)
        runs[f"target verify ({name})"] = lambda target=target, sampling=sampling: target.verify(VerifyCall(
            "s", next(calls), args.prompt, [window[0]], window, sampling, want_probs=not sampling.greedy))
    runs["draft window (bare)"] = bare(resolve_model("demo:draft"), prompt, window, True)
    runs["target verify (bare)"] = bare(resolve_model("demo:target"), prompt, [window[0], *window], False)
    figures = interleaved_ms(runs, args.repeats)
    for name, ms in figures.items():
        kind = "draft window" if name.startswith("draft") else "target verify"
        print(f"{name:28s} {ms:8.3f} ms   x{ms / figures[f'{kind} (bare)']:.2f} of bare")


if __name__ == "__main__":
    main()

"""A generation job for `ray job submit`: find the running orchestrator on the cluster and generate.

    ray job submit --address http://<head>:8265 --working-dir . -- \
        python deploy/job_generate.py --prompt "def fibonacci(n):" --max-new-tokens 64

With --prompts FILE.jsonl ({"prompt": ...} per line) every prompt is generated and each result is
printed as one JSON line (prompt, completion, stats). The job runs on the cluster as a Ray driver,
finds the orchestrator actor by the name in the serve config, and talks to it over gRPC.
"""

from __future__ import annotations

import argparse
import json
import sys

import ray

from specdec.config import ServeConfig
from specdec.orchestrator.client import Client
from specdec.orchestrator.serving.launch import find_orchestrator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="the serve config the deployment was started with (names the actor)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one prompt")
    source.add_argument("--prompts", help="a JSONL file of {\"prompt\": ...} lines")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args()

    ray.init(address="auto")
    address = ray.get(find_orchestrator(ServeConfig.load(args.config)).health.remote())["address"]
    prompts = ([args.prompt] if args.prompt else
               [json.loads(line)["prompt"] for line in open(args.prompts) if line.strip()])
    with Client(address) as client:
        for prompt in prompts:
            out = client.generate(prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
            print(json.dumps({"prompt": prompt, "completion": out.text,
                              "stats": {k: out.stats[k] for k in ("output_tokens", "acceptance_rate",
                                                                  "mean_acceptance_length", "tokens_per_second")}}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

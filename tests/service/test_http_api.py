"""The OpenAI-compatible HTTP API with the real `openai` package (sync and async clients), over the real
gRPC services on loopback: completions and chat, streamed and not; greedy output equal to the gRPC API's
and the target's own generate(); stop strings; usage; n > 1; the SSE framing; 32 concurrent streams; a
disconnect frees the sessions; every refusal with its status and named field; TLS and the API key."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import openai
import pytest

from specdec.config import ServeConfig, resolve_model
from specdec.net.security import make_dev_certificates
from specdec.orchestrator.client import Client
from specdec.orchestrator.serving.actor import OrchestratorActor
from specdec.services.runtime.model import LoadSpec
from specdec.services.target.servicer import TargetServiceActor
from tests.helpers import TargetOracle

PROMPTS = ["def fibonacci(n):", "import os\nimport sys\n", "class Stack:\n    def push(self, item):",
           "for i in range(10):"]
TOKENS = 16
GREEDY = {"ignore_eos": True, "return_token_ids": True}
TOKEN = "http-api-key"
MODEL = "demo:target"


def start(servers, tmp_path_factory, target: str | None = None, **sections) -> tuple[OrchestratorActor, str, str]:
    """An orchestrator with the HTTP API on a free port over the shared draft (and the shared target unless
    `target` is given); returns it (it must live as long as its servers), its gRPC address and HTTP URL."""
    config = ServeConfig().with_overrides(
        orchestrator={"port": 0} | sections.pop("orchestrator", {}), http={"enabled": True, "port": 0},
        defaults={"load_governor": False},
        jobs={"journal_path": str(tmp_path_factory.mktemp("jobs") / "jobs.sqlite")}, **sections)
    actor = OrchestratorActor(config, [servers["draft"]], [target or servers["target"]])
    address = servers["loop"].run(actor.ready())
    return actor, address, servers["loop"].run(actor.http_address())


@pytest.fixture(scope="module")
def api(servers, tmp_path_factory):
    actor, address, url = start(servers, tmp_path_factory)
    yield {"actor": actor, "grpc": address, "url": url,
           "client": openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)}


@pytest.fixture(scope="module")
def references(oracle: TargetOracle) -> dict[str, list[int]]:
    return {prompt: oracle.hf_generate(prompt, TOKENS) for prompt in PROMPTS}


def sessions(servers) -> list[int]:
    return [servers["loop"].run(servers[name].health())["sessions"] for name in ("draft_actor", "target_actor")]


def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def post(url: str, path: str, body: dict | bytes, headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{path}", data, {"Content-Type": "application/json"} | (headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_greedy_completions_equal_the_grpc_api_and_generate(api, references, oracle: TargetOracle):
    response = api["client"].completions.create(model=MODEL, prompt=PROMPTS[:2], max_tokens=TOKENS,
                                                temperature=0, extra_body=GREEDY | {"gamma": 4})
    assert response.object == "text_completion" and response.model == "demo:target"
    assert [c.index for c in response.choices] == [0, 1]
    with Client(api["grpc"]) as grpc_client:
        for prompt, choice in zip(PROMPTS[:2], response.choices, strict=True):
            over_grpc = grpc_client.generate(prompt, max_new_tokens=TOKENS, temperature=0.0, ignore_eos=True)
            assert choice.model_extra["token_ids"] == references[prompt] == over_grpc.token_ids
            assert choice.text == over_grpc.text and choice.finish_reason == "length"
    assert response.usage.prompt_tokens == sum(len(oracle.encode(p)) for p in PROMPTS[:2])
    assert response.usage.completion_tokens == 2 * TOKENS
    assert response.usage.total_tokens == response.usage.prompt_tokens + 2 * TOKENS
    stats = response.spec_decode_stats
    assert stats["rule"] == "greedy" and stats["num_drafts"] > 0
    assert sum(stats["num_accepted_tokens_per_pos"]) == stats["num_accepted_tokens"]
    assert stats["mean_acceptance_length"] == pytest.approx(1 + stats["num_accepted_tokens"] / stats["num_drafts"])
    echoed = api["client"].completions.create(model=MODEL, prompt=PROMPTS[0], max_tokens=4, temperature=0,
                                              echo=True, extra_body=GREEDY)
    assert echoed.choices[0].text.startswith(PROMPTS[0])


def test_a_streamed_completion_equals_the_whole_one_with_the_async_client(api):
    # the same windows both times (the default controller's, and auto overlap's, follow the load)
    fixed = GREEDY | {"gamma": 4, "overlap": False}

    async def run():
        client = openai.AsyncOpenAI(base_url=f"{api['url']}/v1", api_key="unused", max_retries=0)
        whole = await client.completions.create(model=MODEL, prompt=PROMPTS[2], max_tokens=TOKENS,
                                                temperature=0, extra_body=fixed)
        chunks = [chunk async for chunk in await client.completions.create(
            model=MODEL, prompt=PROMPTS[2], max_tokens=TOKENS, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body=fixed)]
        await client.close()
        return whole, chunks

    whole, chunks = asyncio.run(run())
    *pieces, last = chunks
    assert "".join(c.choices[0].text for c in pieces) == whole.choices[0].text
    assert sum((c.choices[0].model_extra["token_ids"] for c in pieces), []) == whole.choices[0].model_extra["token_ids"]
    assert [c.choices[0].finish_reason for c in pieces][-1] == "length"
    assert last.choices == [] and last.usage.completion_tokens == TOKENS
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.spec_decode_stats["num_draft_tokens"] == whole.spec_decode_stats["num_draft_tokens"]
    assert all(c.usage is None for c in pieces)


def test_chat_completions_streamed_and_not(api):
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "def add(a, b):"}]
    whole = api["client"].chat.completions.create(model=MODEL, messages=messages, max_tokens=TOKENS,
                                                  temperature=0, extra_body=GREEDY | {"gamma": 4})
    assert whole.object == "chat.completion" and whole.choices[0].message.role == "assistant"
    assert whole.usage.completion_tokens == TOKENS and whole.spec_decode_stats["num_drafts"] > 0
    stream = api["client"].chat.completions.create(model=MODEL, messages=messages, max_tokens=TOKENS,
                                                   temperature=0, stream=True, stream_options={"include_usage": True},
                                                   extra_body={"ignore_eos": True})
    first, *middle, usage = list(stream)
    assert first.object == "chat.completion.chunk" and first.choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in middle) == whole.choices[0].message.content
    assert middle[-1].choices[0].finish_reason == "length" and usage.usage.completion_tokens == TOKENS


def test_stop_strings_cut_the_text_and_end_the_request(api, servers):
    reference = api["client"].completions.create(model=MODEL, prompt=PROMPTS[1], max_tokens=32, temperature=0,
                                                 extra_body={"ignore_eos": True}).choices[0].text
    stop = reference[len(reference) // 2: len(reference) // 2 + 3]
    expected = reference[:reference.index(stop)]
    for stream in (False, True):
        answer = api["client"].completions.create(model=MODEL, prompt=PROMPTS[1], max_tokens=32, temperature=0,
                                                  stop=[stop, "@@"], stream=stream, extra_body={"ignore_eos": True})
        if stream:
            chunks = list(answer)
            text, finish = "".join(c.choices[0].text for c in chunks), chunks[-1].choices[0].finish_reason
        else:
            text, finish = answer.choices[0].text, answer.choices[0].finish_reason
            assert answer.usage.completion_tokens < 32  # the request stopped decoding at the stop string
        assert (text, finish) == (expected, "stop"), stream
    wait_for(lambda: sessions(servers) == [0, 0])


def test_n_choices_each_sampled_with_its_own_seed(api):
    def sample(stream: bool = False):
        return api["client"].completions.create(model=MODEL, prompt=PROMPTS[3], max_tokens=8, temperature=1.0,
                                                seed=5, n=3, stream=stream, extra_body={"ignore_eos": True})

    first, again = sample(), sample()
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.text for c in first.choices] == [c.text for c in again.choices]  # same seed, same output
    assert len({c.text for c in first.choices}) > 1
    assert first.usage.completion_tokens == 24 and first.usage.prompt_tokens == again.usage.prompt_tokens
    streamed = {}
    for chunk in sample(stream=True):
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + choice.text
    assert [streamed[i] for i in range(3)] == [c.text for c in first.choices]


def test_the_sse_framing(api):
    parts = urlsplit(api["url"])
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.request("POST", "/v1/chat/completions", json.dumps({
        "model": "demo:target", "messages": [{"role": "user", "content": "import"}], "max_tokens": 6,
        "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}),
        {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    body = response.read().decode()
    connection.close()
    assert body.endswith("\n\n")
    events = body.split("\n\n")[:-1]
    assert all(event.startswith("data: ") and "\n" not in event for event in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6


def test_32_concurrent_streams(api, references, servers):
    async def one(client, prompt: str) -> list[int]:
        ids = []
        async for chunk in await client.completions.create(model=MODEL, prompt=prompt, max_tokens=TOKENS, temperature=0,
                                                           stream=True, extra_body=GREEDY):
            ids += chunk.choices[0].model_extra["token_ids"]
        return ids

    async def run():
        client = openai.AsyncOpenAI(base_url=f"{api['url']}/v1", api_key="unused", max_retries=0)
        outputs = await asyncio.gather(*(one(client, PROMPTS[i % len(PROMPTS)]) for i in range(32)))
        await client.close()
        return outputs

    outputs = asyncio.run(run())
    assert outputs == [references[PROMPTS[i % len(PROMPTS)]] for i in range(32)]
    wait_for(lambda: sessions(servers) == [0, 0])


def test_a_client_that_disconnects_mid_stream_frees_its_sessions(api, servers):
    parts = urlsplit(api["url"])
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.request("POST", "/v1/completions", json.dumps({"prompt": "class Tree:", "max_tokens": 400, "gamma": 4,
                                                             "ignore_eos": True, "stream": True}),
                       {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.readline().startswith(b"data: ")
    assert sessions(servers) == [1, 1]
    connection.sock.close()
    connection.close()
    started = time.monotonic()
    wait_for(lambda: sessions(servers) == [0, 0], timeout_s=10)
    assert time.monotonic() - started < 5  # at once: long before 400 tokens could have been decoded
    assert servers["loop"].run(api["actor"].health())["active_requests"] == 0


@pytest.mark.parametrize("path, body, param", [
    ("/v1/completions", {"prompt": "x", "temperature": -1}, "temperature"),
    ("/v1/completions", {"prompt": "x", "top_p": 2}, "top_p"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 99999}, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "rule": "nope"}, "rule"),
    ("/v1/completions", {"prompt": "x", "gamma": 99}, "gamma"),
    ("/v1/completions", {"prompt": "x", "rule": "fsd", "rule_params": {"divergence": "l2"}}, "rule_params.divergence"),
    ("/v1/completions", {"prompt": "x", "num_draft_sequences": 2, "rule": "fsd"}, "num_draft_sequences"),
    ("/v1/completions", {"prompt": "x", "seed": -1}, "seed"),
    ("/v1/completions", {"prompt": "x", "n": 0}, "n"),
    ("/v1/completions", {"prompt": "x", "max_tokens": "many"}, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "frequency_penalty": 1.5}, "frequency_penalty"),
    ("/v1/completions", {"prompt": "x", "logprobs": 2}, "logprobs"),
    ("/v1/completions", {"prompt": ""}, "prompt"),
    ("/v1/completions", {}, "prompt"),
    ("/v1/chat/completions", {"messages": []}, "messages"),
    ("/v1/chat/completions", {"prompt": "x"}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 5000}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_k": 99999}, "top_k"),
])
def test_bad_fields_get_400_naming_the_field(api, path, body, param):
    status, answer = post(api["url"], path, body)
    assert status == 400 and answer["error"]["param"] == param, answer
    assert answer["error"]["type"] == "invalid_request_error" and answer["error"]["message"].startswith(param)


def test_bad_requests_through_the_openai_client(api):
    with pytest.raises(openai.BadRequestError) as info:
        api["client"].completions.create(model=MODEL, prompt="x", temperature=-1)
    assert info.value.status_code == 400 and info.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError) as info:
        api["client"].completions.create(model="gpt-4o", prompt="x")
    assert info.value.body["param"] == "model" and info.value.body["code"] == "model_not_found"
    status, answer = post(api["url"], "/v1/completions", b"{not json")
    assert status == 400 and answer["error"]["message"].startswith("body: not JSON")
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    status, answer = post(api["url"], "/v1/embeddings", {"input": "x"})
    assert status == 404 and answer["error"]["type"] == "invalid_request_error"


def test_models_health_and_metrics(api):
    models = api["client"].models.list()
    assert [m.id for m in models.data] == ["demo:target"]
    assert models.data[0].model_extra["speculative_config"]["model"] == "demo:draft"
    with urllib.request.urlopen(f"{api['url']}/health", timeout=30) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{api['url']}/metrics", timeout=30) as response:
        text = response.read().decode()
    for name in ("vllm:spec_decode_num_drafts_total", "vllm:spec_decode_num_draft_tokens_total",
                 "vllm:spec_decode_num_accepted_tokens_total", "vllm:spec_decode_num_accepted_tokens_per_pos_total",
                 "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:prompt_tokens_total",
                 "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_bucket",
                 "vllm:time_per_output_token_seconds_bucket", "vllm:e2e_request_latency_seconds_bucket",
                 "specdec_num_accepted_tokens_total"):
        assert f'{name}{{model_name="demo:target"' in text or f"{name}{{" in text, name
    drafts = next(line for line in text.splitlines() if line.startswith("vllm:spec_decode_num_drafts_total"))
    assert float(drafts.split()[-1]) > 0


@pytest.fixture(scope="module")
def limited(servers, tmp_path_factory):
    """An orchestrator that admits one request at a time and queues none (kept for the module: its servers live
    with it)."""
    actor, _, url = start(servers, tmp_path_factory, limits={"max_active_requests": 1, "max_waiting_requests": 0})
    yield actor, url


@pytest.fixture(scope="module")
def recovering(servers, tmp_path_factory):
    """An orchestrator over a target of its own, which a test stops; recovery gives up after 3 s."""
    target = TargetServiceActor(LoadSpec(resolve_model("demo:target")))
    actor, _, url = start(servers, tmp_path_factory, target=servers["loop"].run(target.ready()),
                          limits={"recovery_timeout_s": 3.0})
    yield target, actor, url


@pytest.fixture(scope="module")
def secured(servers, tmp_path_factory):
    """TLS with development certificates and the API key, on the HTTP API as on the gRPC one."""
    certs = make_dev_certificates(tmp_path_factory.mktemp("certs"), ["127.0.0.1", "localhost"])
    token_file = certs["ca"].parent / "token"
    token_file.write_text(TOKEN + "\n")
    actor, _, url = start(servers, tmp_path_factory, orchestrator={"token_file": str(token_file)},
                          tls={"cert": str(certs["cert"]), "key": str(certs["key"])})
    yield actor, url, ssl.create_default_context(cafile=str(certs["ca"]))


def test_more_choices_than_the_orchestrator_admits_at_once_are_refused_naming_n(limited):
    _, url = limited
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt="x", max_tokens=2, n=2)
    assert info.value.body["param"] == "n"


def test_admission_refusal_is_429(servers, limited):
    actor, url = limited
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    stream = client.completions.create(model=MODEL, prompt="class A:", max_tokens=300, stream=True,
                                       extra_body={"ignore_eos": True})
    next(iter(stream))  # one request in flight
    with pytest.raises(openai.RateLimitError) as info:
        client.completions.create(model=MODEL, prompt="x", max_tokens=2)
    assert info.value.status_code == 429 and info.value.body["param"] == "max_waiting_requests"
    assert info.value.response.headers["Retry-After"] == "1"
    stream.close()
    wait_for(lambda: servers["loop"].run(actor.health())["active_requests"] == 0)
    assert client.completions.create(model=MODEL, prompt="x", max_tokens=2).usage.completion_tokens >= 1


def test_503_while_the_target_recovers(servers, recovering):
    loop = servers["loop"]
    target, _, url = recovering
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    assert client.completions.create(model=MODEL, prompt="x", max_tokens=2).usage.completion_tokens >= 1
    loop.run(target._server.stop(None))  # the target goes away; nothing restarts it here
    first: dict = {}

    def waiting_request():
        try:
            client.completions.create(model=MODEL, prompt="def f():", max_tokens=4)
        except openai.APIStatusError as exc:
            first["status"] = exc.status_code

    waiter = threading.Thread(target=waiting_request)
    waiter.start()

    def health_status() -> int:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    wait_for(lambda: health_status() == 503, timeout_s=10)
    with pytest.raises(openai.InternalServerError) as info:  # refused at once while the target is recovered
        client.completions.create(model=MODEL, prompt="x", max_tokens=2)
    assert info.value.status_code == 503 and info.value.body["type"] == "server_error"
    waiter.join(timeout=30)
    assert first == {"status": 503}  # the request that waited for the recovery, which did not come


def test_tls_and_the_api_key(secured, oracle: TargetOracle):
    _, url, context = secured
    assert url.startswith("https://")

    def client(api_key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0,
                             http_client=openai.DefaultHttpx2Client(verify=context))

    with client(TOKEN) as trusted:
        answer = trusted.completions.create(model=MODEL, prompt="def f(x):", max_tokens=6, temperature=0,
                                            extra_body=GREEDY)
    assert answer.choices[0].model_extra["token_ids"] == oracle.hf_generate("def f(x):", 6)
    with client("wrong") as wrong, pytest.raises(openai.AuthenticationError) as info:
        wrong.completions.create(model=MODEL, prompt="x", max_tokens=2)
    assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
    request = urllib.request.Request(f"{url}/v1/models")  # no Authorization header at all
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30, context=context)
    assert refused.value.code == 401 and json.loads(refused.value.read())["error"]["message"].startswith(
        "authorization")
    for path in ("/health", "/metrics"):  # probes and scrapes need no key
        with urllib.request.urlopen(f"{url}{path}", timeout=30, context=context) as response:
            assert response.status == 200
    with pytest.raises(urllib.error.URLError):  # an untrusting client does not get through
        urllib.request.urlopen(f"{url}/health", timeout=30)

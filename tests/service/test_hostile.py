"""Hostile input against every gRPC service (issue 6, point 4), through the Python client and as raw
messages and bytes: each bad input gets a clear status code and a message naming the field, no process
dies, and legitimate greedy requests in flight meanwhile finish with the target's own greedy output.

Also the round contract the orchestrator's retries rely on: a replayed (session, round) gets the identical
answer without recomputing, a different request for it or an older round is FAILED_PRECONDITION naming
`round`, and a session the service does not hold (with keep_len > 0) is NOT_FOUND naming `session_id`.
"""

from __future__ import annotations

import itertools
import math
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from transformers import AutoTokenizer

from specdec.config import ServeConfig, resolve_model
from specdec.net.rpc import RpcLimits
from specdec.orchestrator.client import Client
from specdec.orchestrator.serving.actor import OrchestratorActor
from specdec.services.draft.servicer import DraftServiceActor
from specdec.services.runtime.model import LoadSpec
from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc
from tests.helpers import BackgroundLoop, TargetOracle

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
PROMPT_IDS = [10, 20, 30, 40, 50]
GREEDY = pb.SamplingParams(temperature=0.0)
SMALL_LIMIT = 16 * 1024  # max_message_bytes of the strict servers
LEGIT_PROMPTS = ["import os\nimport sys\n\n\ndef main(", "class Stack:\n    def __init__(self):\n        self."]
TIMEOUT_S = 60


@dataclass
class Env:
    """Everything a case talks to: the shared services, and strict ones with a small message limit."""

    client: Client
    draft: pb_grpc.DraftServiceStub
    target: pb_grpc.TargetServiceStub
    orchestrator: pb_grpc.OrchestratorServiceStub
    channels: dict[str, grpc.Channel]
    strict_client: Client
    strict_draft: pb_grpc.DraftServiceStub
    vocab_size: int

    def raw(self, service: str, method: str, payload: bytes) -> bytes:
        """Send bytes as they are, no serialization: the server must cope with whatever arrives."""
        path = f"/specdec.v1.{method}"
        if path.endswith("/Generate"):
            return list(self.channels[service].unary_stream(path)(payload, timeout=TIMEOUT_S))
        return self.channels[service].unary_unary(path)(payload, timeout=TIMEOUT_S)


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable[[Env], object]  # makes the hostile call, which must raise grpc.RpcError
    code: grpc.StatusCode
    names: str  # the status message must contain this: the field (or the message type, or the limit)


# -- the shapes of a hostile call ---------------------------------------------------------------------------


def generate(prompt: str = "def f(x):", **kwargs) -> Callable[[Env], object]:
    """Through the Python client."""
    return lambda env: env.client.generate(prompt, **({"max_new_tokens": 4} | kwargs))


def generate_message(**fields) -> Callable[[Env], object]:
    """A raw GenerateRequest, built without the client's help."""
    message = pb.GenerateRequest(**({"prompt": "def f(x):", "max_new_tokens": 4} | fields))
    return lambda env: list(env.orchestrator.Generate(message, timeout=TIMEOUT_S))


def propose_message(session_id: str = "hostile", round_index: int = 0, **fields) -> pb.ProposeRequest:
    return pb.ProposeRequest(**({"session_id": session_id, "round": round_index, "keep_len": 0,
                                 "new_tokens": PROMPT_IDS, "gamma": 2, "sampling": GREEDY} | fields))


def verify_message(session_id: str = "hostile", round_index: int = 0, **fields) -> pb.VerifyRequest:
    return pb.VerifyRequest(**({"session_id": session_id, "round": round_index, "keep_len": 0,
                                "new_tokens": PROMPT_IDS, "draft_tokens": [1, 2], "sampling": GREEDY} | fields))


def propose(**fields) -> Callable[[Env], object]:
    return lambda env: env.draft.Propose(propose_message(**fields), timeout=TIMEOUT_S)


def verify(**fields) -> Callable[[Env], object]:
    return lambda env: env.target.Verify(verify_message(**fields), timeout=TIMEOUT_S)


def raw(service: str, method: str, payload: bytes) -> Callable[[Env], object]:
    return lambda env: env.raw(service, method, payload)


def truncated(message) -> bytes:
    return message.SerializeToString()[:-3]


def bad_utf8_string_field(field_number: int) -> bytes:
    """A length-delimited field holding bytes that are not UTF-8 (a Python client cannot even build this)."""
    return bytes([field_number << 3 | 2, 3, 0xFF, 0xFE, 0x80])


# -- hostile calls that need a session in some state first (every session they make is ended) ----------------


def out_of_vocabulary(service: str) -> Callable[[Env], object]:
    def send(env: Env):
        if service == "draft":
            return env.draft.Propose(propose_message(new_tokens=[env.vocab_size]), timeout=TIMEOUT_S)
        return env.target.Verify(verify_message(draft_tokens=[1, env.vocab_size]), timeout=TIMEOUT_S)

    return send


def with_session(service: str, session_id: str, then: Callable[[Env], object], on: str | None = None,
                 end_first: bool = False) -> Callable[[Env], object]:
    """Open `session_id` on `service` with round 1 (5 prompt tokens), optionally end it, then send `then`,
    and end the session on both services whatever happens."""

    def send(env: Env):
        try:
            if service == "draft":
                env.draft.Propose(propose_message(session_id, 1), timeout=TIMEOUT_S)
            else:
                env.target.Verify(verify_message(session_id, 1), timeout=TIMEOUT_S)
            if end_first:
                stub(env, service).EndSession(pb.EndSessionRequest(session_id=session_id), timeout=TIMEOUT_S)
            return then(env)
        finally:
            for name in ("draft", "target"):
                stub(env, name).EndSession(pb.EndSessionRequest(session_id=session_id), timeout=TIMEOUT_S)

    return send


def stub(env: Env, service: str):
    return env.draft if service == "draft" else env.target


def oversize_prompt(env: Env):
    return env.strict_client.generate("x" * (2 * SMALL_LIMIT), max_new_tokens=4)


def oversize_propose(env: Env):
    return env.strict_draft.Propose(propose_message(new_tokens=[300] * SMALL_LIMIT), timeout=TIMEOUT_S)


MAX_PROMPT_CHARS = ServeConfig().limits.max_prompt_chars

CLIENT_CASES = [
    Case("empty prompt", generate(""), INVALID, "prompt"),
    Case("prompt over limits.max_prompt_chars", generate("x" * (MAX_PROMPT_CHARS + 1)), INVALID, "prompt"),
    Case("prompt over the model's context", generate("value = compute(1, 2)\n" * 400), INVALID, "prompt"),
    Case("temperature NaN", generate(temperature=math.nan), INVALID, "sampling.temperature"),
    Case("temperature inf", generate(temperature=math.inf), INVALID, "sampling.temperature"),
    Case("temperature negative", generate(temperature=-1.0), INVALID, "sampling.temperature"),
    Case("top_p NaN", generate(top_p=math.nan), INVALID, "sampling.top_p"),
    Case("top_p inf", generate(top_p=math.inf), INVALID, "sampling.top_p"),
    Case("top_k negative", generate(top_k=-1), INVALID, "sampling.top_k"),
    Case("top_k past the vocabulary", generate(top_k=2**31 - 1), INVALID, "sampling.top_k"),
    Case("gamma -1", generate(gamma=-1), INVALID, "gamma"),
    Case("gamma 10**9", generate(gamma=10**9), INVALID, "gamma"),
    Case("max_new_tokens -1", generate(max_new_tokens=-1), INVALID, "max_new_tokens"),
    Case("max_new_tokens 2**31-1", generate(max_new_tokens=2**31 - 1), INVALID, "max_new_tokens"),
    Case("num_draft_sequences -1", generate(num_draft_sequences=-1), INVALID, "num_draft_sequences"),
    Case("num_draft_sequences 10**6", generate(num_draft_sequences=10**6), INVALID, "num_draft_sequences"),
    Case("speculation_lanes -1", generate(speculation_lanes=-1), INVALID, "speculation_lanes"),
    Case("speculation_lanes 10**6", generate(speculation_lanes=10**6), INVALID, "speculation_lanes"),
    Case("seed negative", generate(seed=-1), INVALID, "seed"),
    Case("unknown rule", generate(rule="no-such-rule"), INVALID, "rule"),
    Case("greedy rule with sampling", generate(rule="greedy", temperature=1.0), INVALID, "rule"),
    Case("unknown gamma controller", generate(gamma_controller="no-such"), INVALID, "gamma_controller"),
    Case("fsd threshold NaN", generate(temperature=1.0, rule="fsd", rule_params={"threshold": math.nan}), INVALID,
         "rule_params.threshold"),
    Case("threshold inf, ignored by sd", generate(rule_params={"threshold": math.inf}), INVALID,
         "rule_params.threshold"),
    Case("opt epsilon NaN", generate(temperature=1.0, rule="opt", rule_params={"epsilon": math.nan}), INVALID,
         "rule_params.epsilon"),
    Case("typical delta -inf", generate(temperature=1.0, rule="typical", rule_params={"delta": -math.inf}), INVALID,
         "rule_params.delta"),
    Case("fsd divergence_top_k -1", generate(temperature=1.0, rule="fsd", rule_params={"divergence_top_k": -1}),
         INVALID, "rule_params.divergence_top_k"),
    Case("fsd unknown divergence", generate(temperature=1.0, rule="fsd", rule_params={"divergence": "nope"}),
         INVALID, "rule_params.divergence"),
    Case("gammatune eta NaN", generate(gamma_controller="gammatune", controller_params={"eta": math.nan}), INVALID,
         "controller_params.eta"),
    Case("cost smoothing inf", generate(gamma_controller="cost", controller_params={"smoothing": math.inf}),
         INVALID, "controller_params.smoothing"),
    Case("gammatune+ confidence_threshold NaN",
         generate(gamma_controller="gammatune+", controller_params={"confidence_threshold": math.nan}), INVALID,
         "controller_params.confidence_threshold"),
    Case("eta inf, ignored by fixed", generate(gamma_controller="fixed", controller_params={"eta": math.inf}),
         INVALID, "controller_params.eta"),
    Case("controller gamma_max 10**9", generate(controller_params={"gamma_max": 10**9}), INVALID,
         "controller_params.gamma_max"),
    Case("request over max_message_bytes", oversize_prompt, EXHAUSTED, "larger than max"),
]

ORCHESTRATOR_RAW_CASES = [
    Case("GenerateRequest truncated", raw("orchestrator", "OrchestratorService/Generate",
                                          truncated(pb.GenerateRequest(prompt="def f(x):", max_new_tokens=4))),
         INVALID, "specdec.v1.GenerateRequest"),
    Case("prompt not UTF-8", raw("orchestrator", "OrchestratorService/Generate", bad_utf8_string_field(1)), INVALID,
         "specdec.v1.GenerateRequest"),
    Case("GetServerInfo garbage", raw("orchestrator", "OrchestratorService/GetServerInfo", b"\xff\xff\xff"),
         INVALID, "specdec.v1.GetInfoRequest"),
    Case("message: top_p NaN", generate_message(sampling=pb.SamplingParams(temperature=1.0, top_p=math.nan)),
         INVALID, "sampling.top_p"),
    Case("message: epsilon inf", generate_message(rule_params=pb.RuleParams(epsilon=math.inf)), INVALID,
         "rule_params.epsilon"),
    Case("message: seed -5", generate_message(seed=-5), INVALID, "seed"),
    Case("message: gamma 2**31-1", generate_message(gamma=2**31 - 1), INVALID, "gamma"),
]

DRAFT_CASES = [
    Case("session_id empty", propose(session_id=""), INVALID, "session_id"),
    Case("session_id over the length limit", propose(session_id="s" * 1000), INVALID, "session_id"),
    Case("session_id with a newline", propose(session_id="two\nlines"), INVALID, "session_id"),
    Case("session_id not ASCII", propose(session_id="s\u00e9ance"), INVALID, "session_id"),
    Case("gamma -1", propose(gamma=-1), INVALID, "gamma"),
    Case("gamma 10**9", propose(gamma=10**9), INVALID, "gamma"),
    Case("num_draft_sequences -1", propose(num_draft_sequences=-1), INVALID, "num_draft_sequences"),
    Case("num_draft_sequences 10**6", propose(num_draft_sequences=10**6), INVALID, "num_draft_sequences"),
    Case("held settings of an unknown session", propose(session_id="hostile-no-settings", settings_held=True),
         NOT_FOUND, "settings_held"),
    Case("temperature NaN", propose(sampling=pb.SamplingParams(temperature=math.nan)), INVALID,
         "sampling.temperature"),
    Case("top_p inf", propose(sampling=pb.SamplingParams(temperature=1.0, top_p=math.inf)), INVALID,
         "sampling.top_p"),
    Case("confidence_threshold NaN", propose(confidence_threshold=math.nan), INVALID, "confidence_threshold"),
    Case("confidence_threshold inf", propose(confidence_threshold=math.inf), INVALID, "confidence_threshold"),
    Case("confidence_threshold negative", propose(confidence_threshold=-0.5), INVALID, "confidence_threshold"),
    Case("keep_len -1", propose(keep_len=-1), INVALID, "keep_len"),
    Case("keep_len 2**31-1", propose(keep_len=2**31 - 1), INVALID, "keep_len"),
    Case("token id past the vocabulary", out_of_vocabulary("draft"), INVALID, "new_tokens"),
    Case("token id negative", propose(new_tokens=[-1]), INVALID, "new_tokens"),
    Case("no new tokens", propose(new_tokens=[]), PRECONDITION, "new_tokens"),
    Case("100k new tokens", propose(new_tokens=[7] * 100_000), PRECONDITION, "new_tokens"),
    Case("unknown session", propose(session_id="hostile-unknown", keep_len=3), NOT_FOUND, "session_id"),
    Case("lane of a request that does not exist", propose(session_id="0123abcd/lane1", keep_len=4), NOT_FOUND,
         "session_id"),
    Case("a target session", with_session("target", "hostile-target-only", propose(
        session_id="hostile-target-only", round_index=2, keep_len=5)), NOT_FOUND, "session_id"),
    Case("an ended session", with_session("draft", "hostile-ended", propose(
        session_id="hostile-ended", round_index=2, keep_len=5), end_first=True), NOT_FOUND, "session_id"),
    Case("keep_len past the cache", with_session("draft", "hostile-short", propose(
        session_id="hostile-short", round_index=2, keep_len=50)), PRECONDITION, "keep_len"),
    Case("replayed round, different request", with_session("draft", "hostile-replay", propose(
        session_id="hostile-replay", round_index=1, gamma=3)), PRECONDITION, "round"),
    Case("out-of-order round", with_session("draft", "hostile-order", propose(
        session_id="hostile-order", round_index=0)), PRECONDITION, "round"),
    Case("ProposeRequest truncated", raw("draft", "DraftService/Propose", truncated(propose_message())), INVALID,
         "specdec.v1.ProposeRequest"),
    Case("session_id not UTF-8", raw("draft", "DraftService/Propose", bad_utf8_string_field(1)), INVALID,
         "specdec.v1.ProposeRequest"),
    Case("request over max_message_bytes", oversize_propose, EXHAUSTED, "larger than max"),
    Case("EndSession without a session_id", lambda env: env.draft.EndSession(pb.EndSessionRequest()), INVALID,
         "session_id"),
    Case("GetInfo garbage", raw("draft", "DraftService/GetInfo", b"\xff\xff"), INVALID, "specdec.v1.GetInfoRequest"),
]

TARGET_CASES = [
    Case("session_id with a NUL", verify(session_id="a\x00b"), INVALID, "session_id"),
    Case("token id past the vocabulary", out_of_vocabulary("target"), INVALID, "draft_tokens"),
    Case("10k draft tokens", verify(draft_tokens=[1] * 10_000), INVALID, "draft_tokens"),
    Case("windows that do not split", verify(draft_tokens=[1, 2, 3], num_draft_sequences=2), INVALID, "draft_tokens"),
    Case("num_draft_sequences 10**6", verify(num_draft_sequences=10**6), INVALID, "num_draft_sequences"),
    Case("held settings of an unknown session", verify(session_id="hostile-no-settings", settings_held=True),
         NOT_FOUND, "settings_held"),
    Case("decode_tokens -1", verify(draft_tokens=[], decode_tokens=-1), INVALID, "decode_tokens"),
    Case("decode_tokens 10**6", verify(draft_tokens=[], decode_tokens=10**6), INVALID, "decode_tokens"),
    Case("a decoded run with draft tokens", verify(draft_tokens=[1, 2], decode_tokens=4), INVALID, "decode_tokens"),
    Case("too few uniforms for a run", verify(draft_tokens=[], decode_tokens=4, statistics=pb.Statistics(
        recover="target"), uniforms=[0.5, 0.5]), INVALID, "uniforms"),
    Case("top_p NaN", verify(sampling=pb.SamplingParams(temperature=1.0, top_p=math.nan)), INVALID,
         "sampling.top_p"),
    Case("keep_len -5", verify(keep_len=-5), INVALID, "keep_len"),
    Case("unknown recovery", verify(statistics=pb.Statistics(recover="nearest")), INVALID, "statistics.recover"),
    Case("unknown divergence", verify(statistics=pb.Statistics(divergence="hellinger")), INVALID,
         "statistics.divergence"),
    Case("too few uniforms", verify(statistics=pb.Statistics(recover="target"), uniforms=[0.5]), INVALID,
         "uniforms"),
    Case("uniform NaN", verify(statistics=pb.Statistics(recover="target"), uniforms=[0.5, math.nan, 0.1]),
         INVALID, "uniforms"),
    Case("uniform 1", verify(statistics=pb.Statistics(recover="target"), uniforms=[0.5, 1.0, 0.1]), INVALID,
         "uniforms"),
    Case("residual without draft rows", verify(statistics=pb.Statistics(recover="residual"),
                                               uniforms=[0.1, 0.2, 0.3]), INVALID, "draft_probs"),
    Case("draft rows of the wrong shape", verify(draft_probs=pb.TopDistributions(rows=2, k=2, vocab_size=2048,
                                                                                 indices=b"\0" * 12, values=b"")),
         INVALID, "draft_probs"),
    Case("draft rows that are no distribution", verify(draft_probs=pb.TopDistributions(
        rows=2, k=1, vocab_size=2048, indices=b"\0" * 8, values=b"\0" * 8)), INVALID, "draft_probs"),
    Case("statistics over several windows", verify(draft_tokens=[1, 2], num_draft_sequences=2, statistics=pb.Statistics(
        entropy=True)), INVALID, "statistics"),
    Case("unknown session", verify(session_id="hostile-unknown", keep_len=2), NOT_FOUND, "session_id"),
    Case("a draft session", with_session("draft", "hostile-draft-only", verify(
        session_id="hostile-draft-only", round_index=2, keep_len=5)), NOT_FOUND, "session_id"),
    Case("replayed round, different request", with_session("target", "hostile-replay", verify(
        session_id="hostile-replay", round_index=1, draft_tokens=[3])), PRECONDITION, "round"),
    Case("out-of-order round", with_session("target", "hostile-order", verify(
        session_id="hostile-order", round_index=0)), PRECONDITION, "round"),
    Case("VerifyRequest truncated", raw("target", "TargetService/Verify", truncated(verify_message())), INVALID,
         "specdec.v1.VerifyRequest"),
    Case("session_id not UTF-8", raw("target", "TargetService/Verify", bad_utf8_string_field(1)), INVALID,
         "specdec.v1.VerifyRequest"),
    Case("EndSession truncated", raw("target", "TargetService/EndSession",
                                     truncated(pb.EndSessionRequest(session_id="abcdef"))), INVALID,
         "specdec.v1.EndSessionRequest"),
]

CASES = ([("orchestrator client", case) for case in CLIENT_CASES]
         + [("orchestrator raw", case) for case in ORCHESTRATOR_RAW_CASES]
         + [("draft", case) for case in DRAFT_CASES] + [("target", case) for case in TARGET_CASES])


class LegitimateTraffic:
    """Greedy generations looping through the orchestrator on background threads while the cases run."""

    def __init__(self, address: str, threads: int = 2):
        self._stop = threading.Event()
        self.results: list[tuple[str, list[int], dict]] = []
        self.errors: list[grpc.RpcError] = []
        self._threads = [threading.Thread(target=self._loop, args=(address, index), daemon=True)
                         for index in range(threads)]
        for thread in self._threads:
            thread.start()

    def _loop(self, address: str, index: int) -> None:
        # One plain serial stream, one overlapped with speculation lanes (extra draft sessions and rounds).
        options = {"gamma": 4} if index % 2 == 0 else {"gamma": 3, "overlap": True, "speculation_lanes": 2}
        with Client(address, timeout_s=120) as client:
            for count in itertools.count():  # at least one request each, then until stopped
                prompt = LEGIT_PROMPTS[(index + count) % len(LEGIT_PROMPTS)]
                try:
                    completion = client.generate(prompt, max_new_tokens=16, temperature=0.0, ignore_eos=True,
                                                 **options)
                except grpc.RpcError as exc:  # reported by the final test
                    self.errors.append(exc)
                    return
                self.results.append((prompt, completion.token_ids, completion.stats))
                if self._stop.is_set():
                    return

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=300)


@pytest.fixture(scope="module")
def strict():
    """A draft service and an orchestrator with a small message limit; the draft also expires idle sessions."""
    loop = BackgroundLoop()
    draft = DraftServiceActor(LoadSpec(resolve_model("demo:draft")), limits=RpcLimits(max_message_bytes=SMALL_LIMIT),
                              session_idle_s=0.5)
    draft_address = loop.run(draft.ready())
    yield {"loop": loop, "draft_actor": draft, "draft": draft_address}
    loop.stop()


@pytest.fixture(scope="module")
def strict_orchestrator(servers):
    config = ServeConfig().with_overrides(orchestrator={"port": 0}, limits={"max_message_bytes": SMALL_LIMIT})
    actor = OrchestratorActor(config, [servers["draft"]], [servers["target"]])
    yield servers["loop"].run(actor.ready())  # the actor object must live as long as its server


@pytest.fixture(scope="module")
def sessions_before(servers) -> dict[str, int]:
    return {name: servers["loop"].run(servers[name].health())["sessions"] for name in ("draft_actor", "target_actor")}


@pytest.fixture(scope="module")
def traffic(servers, sessions_before):
    traffic = LegitimateTraffic(servers["orchestrator"])
    yield traffic
    traffic.stop()


@pytest.fixture(scope="module")
def env(servers, strict, strict_orchestrator, traffic):
    channels = {name: grpc.insecure_channel(servers[name]) for name in ("draft", "target", "orchestrator")}
    strict_channel = grpc.insecure_channel(strict["draft"])
    with Client(servers["orchestrator"], timeout_s=TIMEOUT_S) as client, \
            Client(strict_orchestrator, timeout_s=TIMEOUT_S) as strict_client:
        draft = pb_grpc.DraftServiceStub(channels["draft"])
        yield Env(client=client, draft=draft, target=pb_grpc.TargetServiceStub(channels["target"]),
                  orchestrator=pb_grpc.OrchestratorServiceStub(channels["orchestrator"]), channels=channels,
                  strict_client=strict_client, strict_draft=pb_grpc.DraftServiceStub(strict_channel),
                  vocab_size=draft.GetInfo(pb.GetInfoRequest(), timeout=TIMEOUT_S).vocab_size)
    for channel in [*channels.values(), strict_channel]:
        channel.close()


@pytest.mark.parametrize("service, case", CASES, ids=[f"{service}: {case.name}" for service, case in CASES])
def test_bad_input_gets_a_clear_status_naming_the_field(env: Env, service: str, case: Case):
    with pytest.raises(grpc.RpcError) as info:
        case.send(env)
    assert info.value.code() == case.code, info.value.details()
    assert case.names in info.value.details()


def replay_scenario(env: Env, servers, service: str) -> None:
    """Round 1 asked three times at once and once more later: one computation, four identical answers; the
    session goes on with round 3; after EndSession its rounds start over."""
    actor = servers[f"{service}_actor"]
    replayed = servers["loop"].run(actor.health())["replayed_rounds"]
    session_id = f"hostile-idempotent-{service}"
    if service == "draft":
        call, message = env.draft.Propose, propose_message
        follow_up = propose_message(session_id, 3, keep_len=len(PROMPT_IDS), new_tokens=[9])
    else:
        call, message = env.target.Verify, verify_message
        follow_up = verify_message(session_id, 3, keep_len=len(PROMPT_IDS), new_tokens=[9], draft_tokens=[4])
    try:
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: call(message(session_id, 1), timeout=TIMEOUT_S), range(3)))
        answers.append(call(message(session_id, 1), timeout=TIMEOUT_S))
        assert all(answer == answers[0] for answer in answers)  # compute_seconds too: the same computation
        assert servers["loop"].run(actor.health())["replayed_rounds"] == replayed + 3
        assert call(follow_up, timeout=TIMEOUT_S).cache_len >= len(PROMPT_IDS) + 1  # rounds may skip numbers
        stub(env, service).EndSession(pb.EndSessionRequest(session_id=session_id), timeout=TIMEOUT_S)
        assert call(message(session_id, 0), timeout=TIMEOUT_S).cache_len > 0  # round 0 again: forgotten
    finally:
        stub(env, service).EndSession(pb.EndSessionRequest(session_id=session_id), timeout=TIMEOUT_S)


@pytest.mark.parametrize("service", ["draft", "target"])
def test_a_replayed_round_gets_the_identical_answer_computed_once(env: Env, servers, service: str):
    replay_scenario(env, servers, service)


@pytest.mark.parametrize("service", ["draft", "target"])
def test_a_refused_call_leaves_the_settings_its_session_holds(env: Env, service: str):
    message, call = (propose_message, env.draft.Propose) if service == "draft" else (verify_message, env.target.Verify)
    answer = (lambda response: list(response.draft_tokens)) if service == "draft" else \
        (lambda response: list(response.target_argmax))
    held, fresh = f"hostile-held-{service}", f"hostile-fresh-{service}"
    try:
        call(message(held, 1), timeout=TIMEOUT_S)
        with pytest.raises(grpc.RpcError) as info:  # new settings that fail their checks
            call(message(held, 2, keep_len=len(PROMPT_IDS), new_tokens=[9],
                         sampling=pb.SamplingParams(temperature=math.nan)), timeout=TIMEOUT_S)
        assert info.value.code() == INVALID
        later = message(held, 3, keep_len=len(PROMPT_IDS), new_tokens=[9], settings_held=True)
        later.ClearField("sampling")
        call(message(fresh, 1), timeout=TIMEOUT_S)
        expected = call(message(fresh, 2, keep_len=len(PROMPT_IDS), new_tokens=[9]), timeout=TIMEOUT_S)
        assert answer(call(later, timeout=TIMEOUT_S)) == answer(expected)  # still the first call's greedy
    finally:
        for session_id in (held, fresh):
            stub(env, service).EndSession(pb.EndSessionRequest(session_id=session_id), timeout=TIMEOUT_S)


def test_an_expired_session_is_not_found_and_its_rounds_are_forgotten(env: Env, strict):
    loop, actor = strict["loop"], strict["draft_actor"]
    env.strict_draft.Propose(propose_message("hostile-idle", 5), timeout=TIMEOUT_S)
    deadline = time.monotonic() + 30
    while loop.run(actor.health())["sessions"]:
        assert time.monotonic() < deadline, "the idle session did not expire"
        time.sleep(0.1)
    with pytest.raises(grpc.RpcError) as info:
        env.strict_draft.Propose(propose_message("hostile-idle", 6, keep_len=len(PROMPT_IDS), new_tokens=[9]),
                                 timeout=TIMEOUT_S)
    assert info.value.code() == NOT_FOUND and info.value.details().startswith("session_id")
    assert env.strict_draft.Propose(propose_message("hostile-idle", 0), timeout=TIMEOUT_S).cache_len > 0
    env.strict_draft.EndSession(pb.EndSessionRequest(session_id="hostile-idle"), timeout=TIMEOUT_S)


def test_a_pair_with_different_vocabularies_is_refused_naming_both_models(tmp_path, servers):
    draft_path = tmp_path / "draft-with-another-vocabulary"
    shutil.copytree(resolve_model("demo:draft"), draft_path)
    tokenizer = AutoTokenizer.from_pretrained(draft_path)
    tokenizer.add_tokens(["<hostile-token>"])
    tokenizer.save_pretrained(draft_path)
    loop = BackgroundLoop()
    try:
        draft = DraftServiceActor(LoadSpec(str(draft_path)))  # held: its server lives as long as the object
        draft_address = loop.run(draft.ready())
        orchestrator = OrchestratorActor(ServeConfig().with_overrides(orchestrator={"port": 0}), [draft_address],
                                         [servers["target"]])
        with pytest.raises(ValueError) as info:
            loop.run(orchestrator.ready())
        message = str(info.value)
        assert "tokenizers do not match" in message
        assert str(draft_path) in message and resolve_model("demo:target") in message
    finally:
        loop.stop()


HOSTILE_SCENARIOS = 4  # the identical replays (draft, target), expiry, the mismatched pair


def test_requests_in_flight_finish_correctly_and_every_service_still_answers(env: Env, servers, traffic,
                                                                             sessions_before, oracle: TargetOracle,
                                                                             record_property):
    traffic.stop()
    assert not traffic.errors, traffic.errors
    assert len(traffic.results) >= 2
    expected = {prompt: oracle.hf_generate(prompt, 16) for prompt in LEGIT_PROMPTS}
    for prompt, token_ids, stats in traffic.results:
        assert token_ids == expected[prompt] and stats["finish_reason"] == "length"
    for name, service in (("draft", "specdec.v1.DraftService"), ("target", "specdec.v1.TargetService"),
                          ("orchestrator", "specdec.v1.OrchestratorService")):
        status = health_pb2_grpc.HealthStub(env.channels[name]).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert env.draft.GetInfo(pb.GetInfoRequest(), timeout=TIMEOUT_S).vocab_size == env.vocab_size
    assert env.target.GetInfo(pb.GetInfoRequest(), timeout=TIMEOUT_S).vocab_size == env.vocab_size
    assert env.client.server_info()["draft"]["vocab_size"] == env.vocab_size
    deadline = time.monotonic() + 30
    while {name: servers["loop"].run(servers[name].health())["sessions"] for name in sessions_before} \
            != sessions_before:  # every session a case or a request opened was ended
        assert time.monotonic() < deadline, "sessions were left open"
        time.sleep(0.1)
    count = len(CASES) + HOSTILE_SCENARIOS
    record_property("hostile_cases", count)
    print(f"\nhostile inputs: {count} ({len(CASES)} status cases + {HOSTILE_SCENARIOS} scenarios); "
          f"legitimate requests finished meanwhile: {len(traffic.results)}")
    assert count >= 30

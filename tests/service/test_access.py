"""Access over real gRPC: mutual TLS between the orchestrator and the services, TLS and a bearer token on
the client API, with development certificates from `specdec certs`; every refusal has its status."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from specdec.config import JobsConfig, ServeConfig, resolve_model
from specdec.net.security import TlsFiles
from specdec.orchestrator.client import Client
from specdec.orchestrator.serving.actor import OrchestratorActor
from specdec.services.draft.servicer import DraftServiceActor
from specdec.services.runtime.model import LoadSpec
from specdec.services.target.servicer import TargetServiceActor
from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc
from tests.helpers import BackgroundLoop, TargetOracle

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    certs = tmp_path_factory.mktemp("certs")
    made = subprocess.run([sys.executable, "-m", "specdec.orchestrator.cli", "certs", "--out", str(certs),
                           "--hosts", "127.0.0.1", "localhost"], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    token_file = certs / "token"
    token_file.write_text(TOKEN + "\n")
    tls = TlsFiles(cert=str(certs / "cert.pem"), key=str(certs / "key.pem"), ca=str(certs / "ca.pem"),
                   require_client_cert=True)
    loop = BackgroundLoop()
    draft = DraftServiceActor(LoadSpec(resolve_model("demo:draft")), tls=tls)
    target = TargetServiceActor(LoadSpec(resolve_model("demo:target")), tls=tls)
    drafts, targets = [loop.run(draft.ready())], [loop.run(target.ready())]
    config = ServeConfig().with_overrides(orchestrator={"port": 0, "token_file": str(token_file)})
    jobs = JobsConfig(journal_path=str(certs / "jobs.sqlite"))
    orchestrator = OrchestratorActor(ServeConfig(orchestrator=config.orchestrator, tls=tls, jobs=jobs), drafts, targets)
    address = loop.run(orchestrator.ready())
    yield {"address": address, "draft": drafts[0], "certs": certs, "tls": tls}
    loop.stop()


def test_tls_and_token_let_a_client_generate(secured):
    oracle = TargetOracle()
    with Client(secured["address"], tls_ca=str(secured["certs"] / "ca.pem"), token=TOKEN) as client:
        out = client.generate("def f(x):", max_new_tokens=12, temperature=0.0, gamma=3, ignore_eos=True)
    assert out.token_ids == oracle.hf_generate("def f(x):", 12)  # the orchestrator reached both services over mTLS


@pytest.mark.parametrize("token, code", [(None, grpc.StatusCode.UNAUTHENTICATED),
                                         ("wrong", grpc.StatusCode.PERMISSION_DENIED)])
def test_the_client_api_refuses_a_missing_or_wrong_token(secured, token, code):
    with Client(secured["address"], tls_ca=str(secured["certs"] / "ca.pem"), token=token) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.generate("def f(x):", max_new_tokens=4)
        assert info.value.code() == code and info.value.details().startswith("authorization")
        with pytest.raises(grpc.RpcError) as info:
            client.server_info()
        assert info.value.code() == code


def test_health_checks_need_no_token(secured):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    credentials = grpc.ssl_channel_credentials((secured["certs"] / "ca.pem").read_bytes())
    with grpc.secure_channel(secured["address"], credentials) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_plaintext_and_unknown_ca_are_refused(secured, tmp_path):
    with Client(secured["address"], token=TOKEN, timeout_s=10) as plaintext:
        with pytest.raises(grpc.RpcError) as info:
            plaintext.generate("def f(x):", max_new_tokens=4)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    other = tmp_path / "other"
    subprocess.run([sys.executable, "-m", "specdec.orchestrator.cli", "certs", "--out", str(other)], check=True,
                   capture_output=True, timeout=120)
    with Client(secured["address"], tls_ca=str(other / "ca.pem"), token=TOKEN, timeout_s=10) as untrusting:
        with pytest.raises(grpc.RpcError) as info:
            untrusting.generate("def f(x):", max_new_tokens=4)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_service_demands_a_client_certificate(secured):
    ca = (secured["certs"] / "ca.pem").read_bytes()
    request = pb.ProposeRequest(session_id="x", keep_len=0, new_tokens=[5, 6], gamma=1,
                                sampling=pb.SamplingParams(temperature=0.0))
    with grpc.secure_channel(secured["draft"], grpc.ssl_channel_credentials(ca)) as channel:  # no client cert
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.DraftServiceStub(channel).Propose(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(secured["draft"], secured["tls"].channel_credentials()) as channel:
        response = pb_grpc.DraftServiceStub(channel).Propose(request, timeout=30)
        assert len(response.draft_tokens) == 1
        pb_grpc.DraftServiceStub(channel).EndSession(pb.EndSessionRequest(session_id="x"), timeout=30)


def test_unreadable_tls_files_and_tokens_name_the_field(tmp_path):
    from specdec.net.security import read_token

    (tmp_path / "k.pem").write_text("x")
    with pytest.raises(ValueError, match="tls.cert: cannot read"):
        TlsFiles(cert=str(tmp_path / "missing.pem"), key=str(tmp_path / "k.pem")).server_credentials()
    with pytest.raises(ValueError, match="tls.ca: require_client_cert"):
        (tmp_path / "c.pem").write_text("x")
        pem = str(tmp_path / "c.pem")
        TlsFiles(cert=pem, key=pem, require_client_cert=True).server_credentials()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="orchestrator.token_file: .* is empty"):
        read_token(str(tmp_path / "empty"))

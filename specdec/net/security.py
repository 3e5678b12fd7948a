"""Transport security and access: TLS credentials for servers and channels, a bearer-token check on the
client API, and development certificates.

Certificates come from the serve config's `tls` section (PEM files): every server presents `cert`/`key`;
channels trust `ca`; with `require_client_cert` the model services demand a certificate signed by `ca`
(mutual TLS between the services) and the orchestrator presents its own `cert`/`key` to them. The
client API is TLS without client certificates and checks
`authorization: Bearer <token>` on every call but health checks and reflection: no token gives
UNAUTHENTICATED, a wrong one PERMISSION_DENIED.
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")  # probes need no token


@dataclass(frozen=True)
class TlsFiles:
    cert: str = ""  # PEM certificate this process presents
    key: str = ""  # its private key
    ca: str = ""  # PEM CA that signs the peers' certificates
    require_client_cert: bool = False  # model services demand a client certificate signed by `ca` (mutual TLS)

    @property
    def enabled(self) -> bool:
        return bool(self.cert and self.key)

    def _read(self, name: str) -> bytes | None:
        path = getattr(self, name)
        if not path:
            return None
        try:
            return Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise ValueError(f"tls.{name}: cannot read {path}: {exc.strerror}") from exc

    def server_credentials(self, client_api: bool = False) -> grpc.ServerCredentials | None:
        """Server credentials; a model service (not the client API, which checks a token) demands a client
        certificate when `require_client_cert` is set."""
        if not self.enabled:
            return None
        mutual = self.require_client_cert and not client_api
        ca = self._read("ca")
        if mutual and not ca:
            raise ValueError("tls.ca: require_client_cert needs the CA that signs client certificates")
        return grpc.ssl_server_credentials([(self._read("key"), self._read("cert"))],
                                           root_certificates=ca if mutual else None, require_client_auth=mutual)

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """Credentials for a channel to a TLS server: trust `ca`, present `cert`/`key` when set (mutual TLS)."""
        if not self.ca:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self._read("ca"), private_key=self._read("key"),
                                            certificate_chain=self._read("cert"))


class TokenCheck(grpc.aio.ServerInterceptor):
    """Refuse calls without the bearer token: UNAUTHENTICATED when absent, PERMISSION_DENIED when wrong."""

    def __init__(self, token: str):
        if not token:
            raise ValueError("token: must not be empty")
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_SERVICES):
            return handler
        given = dict(details.invocation_metadata or ()).get("authorization")
        if given is None:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, "authorization: a bearer token is required")
        if not hmac.compare_digest(str(given).encode(), self._expected):
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED, "authorization: the token is not valid")
        return handler


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def unary(request, context):
        await context.abort(code, message)

    async def stream(request, context):
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator, as streaming handlers are

    codec = {"request_deserializer": handler.request_deserializer,
             "response_serializer": handler.response_serializer}
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream, **codec)
    return grpc.unary_unary_rpc_method_handler(unary, **codec)


def read_token(path: str) -> str:
    """The token in a file (surrounding whitespace dropped); ValueError naming the field if unusable."""
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ValueError(f"orchestrator.token_file: cannot read {path}: {exc.strerror}") from exc
    if not token:
        raise ValueError(f"orchestrator.token_file: {path} is empty")
    return token


def make_dev_certificates(out_dir: Path, hosts: list[str], days: int = 30) -> dict[str, Path]:
    """A development CA and, signed by it, a certificate for `hosts` (names or IPs) usable by servers and as a
    client certificate. Writes ca.pem, cert.pem, key.pem (and ca-key.pem); returns their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    out_dir.mkdir(parents=True, exist_ok=True)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("specdec development CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(name(hosts[0])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))

    def pem_key(private) -> bytes:
        return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())

    paths = {"ca": out_dir / "ca.pem", "cert": out_dir / "cert.pem", "key": out_dir / "key.pem",
             "ca_key": out_dir / "ca-key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for label, private in (("key", key), ("ca_key", ca_key)):
        paths[label].write_bytes(pem_key(private))
        paths[label].chmod(0o600)
    return paths

"""The committed stubs are what `python -m specdec.proto_gen` generates from protos/ today."""

from __future__ import annotations

from pathlib import Path

from specdec import proto_gen


def test_committed_stubs_are_fresh(tmp_path: Path):
    generated = proto_gen.generate(tmp_path)
    assert generated, "no .proto files found"
    for path in generated:
        committed = proto_gen.REPO_ROOT / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run python -m specdec.proto_gen"
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: run python -m specdec.proto_gen"


def test_stubs_import_package_qualified():
    from specdec.v1 import specdec_pb2, specdec_pb2_grpc

    assert specdec_pb2.DESCRIPTOR.package == "specdec.v1"
    assert "from specdec.v1 import specdec_pb2" in Path(specdec_pb2_grpc.__file__).read_text()

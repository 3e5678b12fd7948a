"""Wire encoding of distributions: compact, exact round trip, clear errors on malformed input."""

from __future__ import annotations

import pytest
import torch

from specdec.runtime import wire
from specdec.v1 import specdec_pb2 as pb


def dense_probs(rows: int, vocab: int) -> torch.Tensor:
    return torch.softmax(torch.randn(rows, vocab, generator=torch.Generator().manual_seed(0)), -1)


def test_dense_round_trip_equals_wire_precision_bit_for_bit():
    probs = dense_probs(5, 300)
    message = wire.encode(probs)
    assert message.encoding == pb.Distributions.DENSE_FP16
    assert len(message.values) == 5 * 300 * 2  # fp16, not fp32
    assert torch.equal(wire.decode(message), wire.wire_precision(probs))


def test_sparse_rows_use_the_sparse_form_and_round_trip():
    probs = dense_probs(3, 1000)
    probs[:, 10:] = 0
    probs = probs / probs.sum(-1, keepdim=True)
    message = wire.encode(probs)
    assert message.encoding == pb.Distributions.SPARSE_FP16
    assert list(message.row_lengths) == [10, 10, 10]
    assert torch.equal(wire.decode(message), wire.wire_precision(probs))


def test_wire_precision_rows_sum_to_one():
    sums = wire.wire_precision(dense_probs(4, 50)).sum(-1)
    assert torch.allclose(sums, torch.ones(4), atol=1e-6)


@pytest.mark.parametrize(
    "message, match",
    [
        (pb.Distributions(encoding=pb.Distributions.DENSE_FP16, rows=2, vocab_size=4, values=b"\0" * 6), "values"),
        (pb.Distributions(encoding=pb.Distributions.DENSE_FP16, rows=1, vocab_size=4, values=b"\0" * 8), "mass"),
        (pb.Distributions(encoding=pb.Distributions.SPARSE_FP16, rows=1, vocab_size=4, values=b"\0\x3c",
                          indices=(7).to_bytes(4, "little"), row_lengths=[1]), "index"),
        (pb.Distributions(encoding=pb.Distributions.SPARSE_FP16, rows=2, vocab_size=4, values=b"\0\x3c",
                          indices=(1).to_bytes(4, "little"), row_lengths=[1]), "disagree"),
        (pb.Distributions(rows=1, vocab_size=4), "encoding"),
        (pb.Distributions(encoding=pb.Distributions.DENSE_FP16, rows=1, vocab_size=0), "shape"),
    ],
)
def test_malformed_messages_raise(message, match):
    with pytest.raises(ValueError, match=match):
        wire.decode(message)

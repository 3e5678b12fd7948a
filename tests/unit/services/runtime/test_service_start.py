"""A model service that cannot have the GPUs its config gives it refuses to start, naming the field."""

from __future__ import annotations

import pytest
import torch

from specdec.config import resolve_model
from specdec.errors import InvalidField
from specdec.services.runtime.model import LoadSpec
from specdec.services.target.servicer import TargetServiceActor
from tests.helpers import BackgroundLoop


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has the two GPUs the target spans")
def test_a_target_spanning_more_gpus_than_it_sees_is_refused_naming_the_field():
    loop = BackgroundLoop()
    try:
        service = TargetServiceActor(LoadSpec(resolve_model("demo:target"), device="cuda", gpus=2))
        with pytest.raises(InvalidField) as refused:
            loop.run(service.ready())
        assert refused.value.field == "target.num_gpus" and "spanning 2 GPUs" in refused.value.reason
    finally:
        loop.stop()

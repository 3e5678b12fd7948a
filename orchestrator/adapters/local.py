"""In-process Proposer and Scorer over the draft and target runners: no RPC, one process.

The engine talks to these exactly as to the gRPC adapters in `remote.py`; tests use them to run the
real round loop and runners over small hand-written models.
"""

from __future__ import annotations

from specdec.services.draft.runner import DraftRunner
from specdec.services.target.runner import TargetRunner
from specdec.types import Proposal, ProposeCall, Verification, VerifyCall


class LocalProposer:
    available = True  # in-process: never down

    def __init__(self, runner: DraftRunner):
        self.runner = runner

    async def propose(self, call: ProposeCall) -> Proposal:
        return self.runner.propose(call)

    async def end_session(self, session_id: str) -> None:
        self.runner.lm.end_session(session_id)


class LocalScorer:
    available = True  # in-process: never down

    def __init__(self, runner: TargetRunner):
        self.runner = runner

    async def verify(self, call: VerifyCall) -> Verification:
        return self.runner.verify(call)

    async def recovered(self) -> None:
        return None  # in-process: never down

    async def end_session(self, session_id: str) -> None:
        self.runner.lm.end_session(session_id)

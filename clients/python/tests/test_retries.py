"""Which failures the client retries, against fake nodes (in-process gRPC
servers) that fail on purpose: leader hints, refusals, ambiguous failures,
and the calls that must not be repeated after one."""

from __future__ import annotations

from concurrent import futures
from typing import Callable, List, Optional

import grpc
import pytest

from swarm_client import (
    OutcomeUnknown,
    PermissionDenied,
    StaleToken,
    Swarm,
    Unauthenticated,
    Unavailable,
)
from swarm_client._proto import work_pb2, work_pb2_grpc
from conftest import free_ports


class FakeNode(work_pb2_grpc.WorkServiceServicer):
    """A WorkService whose answers a test scripts: ``behave(method,
    request, context)`` returns a response or aborts the call."""

    def __init__(self, behave: Callable):
        self.behave = behave
        self.calls: List[str] = []
        self.metadata: List[dict] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        work_pb2_grpc.add_WorkServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{self.port}"
        self.server.start()

    def _answer(self, method: str, request, context):
        self.calls.append(method)
        self.metadata.append(dict(context.invocation_metadata()))
        return self.behave(method, request, context)

    def Submit(self, request, context):
        return self._answer("Submit", request, context)

    def Claim(self, request, context):
        return self._answer("Claim", request, context)

    def Complete(self, request, context):
        return self._answer("Complete", request, context)

    def GetWork(self, request, context):
        return self._answer("GetWork", request, context)


@pytest.fixture()
def nodes():
    started: List[FakeNode] = []

    def start(behave: Callable) -> FakeNode:
        node = FakeNode(behave)
        started.append(node)
        return node

    yield start
    for node in started:
        node.server.stop(grace=None)


def item(id: str = "w1", status: int = work_pb2.WORK_STATUS_PENDING, **fields) -> work_pb2.WorkItem:
    return work_pb2.WorkItem(id=id, type="t", payload_json="null", status=status, **fields)


def refuse(context, leader: Optional[str]) -> None:
    """A node that did nothing and names the leader (or none)."""
    context.set_trailing_metadata((("swarm-leader-addr", leader or ""),))
    context.abort(grpc.StatusCode.UNAVAILABLE, "not the leader")


def fast(endpoints, **kwargs) -> Swarm:
    kwargs.setdefault("total_timeout", "3s")
    return Swarm(endpoints, **kwargs)


def test_a_refusal_naming_the_leader_is_followed_and_the_leader_remembered(nodes):
    leader = nodes(lambda m, r, c: work_pb2.SubmitResponse(item=item(), created=True))
    follower = nodes(lambda m, r, c: refuse(c, leader.addr))
    with fast([follower.addr]) as swarm:
        assert swarm.submit("t").id == "w1"
        assert swarm.endpoints[0] == leader.addr
        swarm.submit("t")
    assert follower.calls == ["Submit"]
    assert leader.calls == ["Submit", "Submit"]


def test_a_node_that_cannot_be_reached_is_skipped(nodes):
    (dead_port,) = free_ports(1)
    live = nodes(lambda m, r, c: work_pb2.WorkResponse(item=item()))
    with fast([f"127.0.0.1:{dead_port}", live.addr]) as swarm:
        assert swarm.get("w1").id == "w1"


def test_an_ambiguous_failure_ends_a_keyless_submit_but_retries_a_keyed_one(nodes):
    def flaky(method, request, context):
        context.abort(grpc.StatusCode.UNAVAILABLE, "forwarding to the leader failed")

    unsure = nodes(flaky)
    good = nodes(lambda m, r, c: work_pb2.SubmitResponse(item=item(), created=True))
    with fast([unsure.addr, good.addr]) as swarm:
        with pytest.raises(OutcomeUnknown, match="may or may not have been applied"):
            swarm.submit("t")
        assert good.calls == []
        assert swarm.submit("t", key="k1").id == "w1"
        assert good.calls == ["Submit"]


def test_a_claim_is_not_repeated_after_a_timeout(nodes):
    import time

    def slow(method, request, context):
        time.sleep(1.0)
        return work_pb2.ClaimResponse()

    first = nodes(slow)
    second = nodes(lambda m, r, c: work_pb2.ClaimResponse(items=[item()]))
    with fast([first.addr, second.addr], request_timeout="300ms") as swarm:
        with pytest.raises(OutcomeUnknown):
            swarm.claim("agent-1")
    assert second.calls == []


def test_a_complete_that_was_applied_before_its_retry_is_a_success(nodes):
    state = {"completes": 0}
    done = item(
        status=work_pb2.WORK_STATUS_COMPLETED,
        token=7,
        history=[work_pb2.HolderRecord(agent="a", token=7, ended="completed")],
    )

    def node(method, request, context):
        if method == "Complete":
            state["completes"] += 1
            if state["completes"] == 1:
                # Applied, but the answer is lost on the way back.
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost")
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, 'stale token 7 for work item "w1": current token is none')
        return work_pb2.WorkResponse(item=done)

    fake = nodes(node)
    with fast([fake.addr]) as swarm:
        assert swarm.complete("w1", 7, {"ok": True}).status == "completed"
        # Without an ambiguous attempt first, stale is stale.
        with pytest.raises(StaleToken):
            swarm.complete("w1", 7)


def test_credentials_go_with_every_call_and_refusals_are_typed(nodes):
    def gate(method, request, context):
        token = dict(context.invocation_metadata()).get("authorization")
        if token is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "this cluster wants a token")
        if token != "Bearer s3cret":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "role reader may not submit")
        return work_pb2.SubmitResponse(item=item(), created=True)

    fake = nodes(gate)
    with fast([fake.addr]) as anonymous, pytest.raises(Unauthenticated, match="wants a token"):
        anonymous.submit("t")
    with fast([fake.addr], token="wrong") as weak, pytest.raises(PermissionDenied, match="may not submit"):
        weak.submit("t")
    with fast([fake.addr], token="s3cret") as admin:
        assert admin.submit("t").id == "w1"


def test_a_refusal_with_no_leader_known_runs_out_as_unavailable(nodes):
    lost = nodes(lambda m, r, c: refuse(c, None))
    with fast([lost.addr], total_timeout="1s") as swarm, pytest.raises(Unavailable) as err:
        swarm.submit("t")
    assert err.value.attempts >= 2
    assert "not the leader" in str(err.value)

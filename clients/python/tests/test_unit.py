"""Parts of the client that need no node: durations, endpoints, and the
mapping from gRPC status to typed error."""

from __future__ import annotations

import datetime

import grpc
import pytest

from swarm_client import errors, seconds
from swarm_client._transport import Failure, Rpc, classify, parse_endpoints, retries_after
from swarm_client.durations import millis


@pytest.mark.parametrize(
    "text, expected",
    [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1m30s", 90.0), ("1h", 3600.0), ("1.5s", 1.5), ("2", 2.0),
     (3, 3.0), (0.25, 0.25), (datetime.timedelta(minutes=1), 60.0)],
)
def test_durations_read_as_people_write_them(text, expected):
    assert seconds(text) == expected


@pytest.mark.parametrize("bad", ["", "ten seconds", "5 parsecs", "-1s", -1, True, None])
def test_a_bad_duration_names_the_argument(bad):
    with pytest.raises(ValueError, match="lease"):
        seconds(bad, "lease")


def test_millis_never_rounds_a_positive_duration_to_zero():
    assert millis("0.0001s") == 1
    assert millis("1s") == 1000


def test_endpoints_parse_from_lists_and_comma_strings():
    assert parse_endpoints("127.0.0.1:7101, http://127.0.0.1:7102/,127.0.0.1:7101") == [
        "127.0.0.1:7101",
        "127.0.0.1:7102",
    ]
    assert parse_endpoints(["https://node1:7101"]) == ["node1:7101"]
    for bad in ["nope", "ftp://h:1", "h:port", "h:1/path", ""]:
        with pytest.raises(ValueError):
            parse_endpoints([bad])


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details="", trailing=()):
        self._code, self._details, self._trailing = code, details, trailing

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing


def test_failures_are_classified_by_what_they_say_about_the_request():
    U = grpc.StatusCode.UNAVAILABLE
    assert classify(FakeRpcError(U, "failed to connect to all addresses; last error: ...")) == (Failure.NOT_SENT, None)
    assert classify(FakeRpcError(U, "not leader", (("swarm-leader-addr", "127.0.0.1:7102"),))) == (
        Failure.REFUSED,
        "127.0.0.1:7102",
    )
    assert classify(FakeRpcError(U, "no leader", (("swarm-leader-addr", ""),))) == (Failure.REFUSED, None)
    assert classify(FakeRpcError(U, "Socket closed")) == (Failure.AMBIGUOUS, None)
    assert classify(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "")) == (Failure.AMBIGUOUS, None)
    assert classify(FakeRpcError(grpc.StatusCode.NOT_FOUND, "x")) == (Failure.ANSWERED, None)


def test_only_repeatable_calls_retry_after_an_ambiguous_failure():
    repeatable = {Rpc.SUBMIT_KEYED, Rpc.RENEW, Rpc.COMPLETE, Rpc.CANCEL, Rpc.GET_WORK, Rpc.LIST_WORK,
                  Rpc.WORK_STATS, Rpc.WATCH_WORK, Rpc.CLUSTER_STATUS}
    for rpc in Rpc:
        assert retries_after(rpc, Failure.NOT_SENT)
        assert retries_after(rpc, Failure.REFUSED)
        assert not retries_after(rpc, Failure.ANSWERED)
        assert retries_after(rpc, Failure.AMBIGUOUS) == (rpc in repeatable), rpc


def test_answers_map_to_typed_errors_with_the_nodes_message():
    def err(code, text, token=False):
        return errors.from_answer(FakeRpcError(code, text), token)

    stale = err(grpc.StatusCode.FAILED_PRECONDITION, 'stale token 3 for work item "x": current token is 5', True)
    assert isinstance(stale, errors.StaleToken)
    assert str(stale) == 'stale token 3 for work item "x": current token is 5'
    reworded = err(grpc.StatusCode.FAILED_PRECONDITION, "token 3 is not current", True)
    assert isinstance(reworded, errors.StaleToken) and str(reworded) == "stale token: token 3 is not current"
    wrong_state = err(grpc.StatusCode.FAILED_PRECONDITION, 'work item "x" is completed: cannot cancel')
    assert type(wrong_state) is errors.FailedPrecondition
    assert isinstance(err(grpc.StatusCode.NOT_FOUND, "gone"), errors.NotFound)
    assert isinstance(err(grpc.StatusCode.INVALID_ARGUMENT, "bad"), errors.InvalidArgument)
    assert isinstance(err(grpc.StatusCode.ALREADY_EXISTS, "taken"), errors.Conflict)
    assert isinstance(err(grpc.StatusCode.PERMISSION_DENIED, "no"), errors.PermissionDenied)
    assert isinstance(err(grpc.StatusCode.UNAUTHENTICATED, "who"), errors.Unauthenticated)
    other = err(grpc.StatusCode.INTERNAL, "disk full")
    assert type(other) is errors.SwarmError and str(other) == "internal: disk full"
    assert other.code == grpc.StatusCode.INTERNAL

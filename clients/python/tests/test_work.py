"""Submitting, reading, watching and cancelling work, workflow runs, and
the typed errors, against the real cluster."""

from __future__ import annotations

import time

import pytest

from swarm_client import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RawJson,
    StaleToken,
    Swarm,
    Unavailable,
    WaitTimeout,
)
from conftest import free_ports


def test_submit_and_get_round_trip_the_fields(swarm, unique_type):
    payload = {"text": "héllo", "n": [1, 2.5, None], "nested": {"ok": True}}
    item = swarm.submit(unique_type, payload, priority=7, requires=["exec"], max_attempts=4)
    assert item.created is True
    assert (item.type, item.status, item.priority, item.requires) == (unique_type, "pending", 7, ("exec",))
    assert item.payload == payload
    assert item.max_attempts == 4
    assert item.token == 0 and item.claim is None and not item.done
    got = swarm.get(item.id)
    assert got == item
    assert got.created is None
    assert [e.kind for e in got.events] == ["submitted"]
    assert swarm.get(item.id, local=True).id == item.id


def test_an_idempotency_key_returns_the_same_item(swarm, unique_type):
    key = f"{unique_type}-key"
    first = swarm.submit(unique_type, {"v": 1}, key=key)
    again = swarm.submit(unique_type, {"v": 2}, key=key)
    assert again.id == first.id
    assert (first.created, again.created) == (True, False)
    assert again.payload == {"v": 1}
    assert again.idempotency_key == key


def test_list_follows_every_page_and_filters(swarm, unique_type):
    ids = {swarm.submit(unique_type, {"n": n}).id for n in range(25)}
    listed = list(swarm.list(type=unique_type, page_size=7))
    assert {i.id for i in listed} == ids
    assert [i.id for i in listed] == sorted(i.id for i in listed)
    victim = sorted(ids)[0]
    swarm.cancel(victim, reason="pruned")
    assert [i.id for i in swarm.list(status="cancelled", type=unique_type)] == [victim]
    assert len(list(swarm.list(status="pending", type=unique_type, page_size=10))) == 24
    with pytest.raises(InvalidArgument, match="unknown status"):
        list(swarm.list(status="done"))


def test_stats_count_by_status_and_type(swarm, unique_type):
    a = swarm.submit(unique_type)
    swarm.submit(unique_type)
    swarm.cancel(a.id)
    stats = swarm.stats()
    counts = stats.by_type[unique_type]
    assert (counts.pending, counts.cancelled, counts.total) == (1, 1, 2)
    assert stats.total >= 2
    assert stats.by_status.pending >= 1
    assert stats.oldest_pending_age is not None and stats.oldest_pending_age >= 0
    assert unique_type in stats.oldest_pending_age_by_type


def test_watch_streams_the_events_until_the_item_ends(swarm, unique_type):
    item = swarm.submit(unique_type, {"step": 1})
    events = swarm.watch(item.id)
    first = next(events)
    assert (first.seq, first.kind, first.status) == (0, "submitted", "pending")
    (task,) = swarm.agent("watched", types=[unique_type]).claim(wait="5s")
    claimed = next(events)
    assert (claimed.kind, claimed.agent, claimed.token) == ("claimed", "watched", task.token)
    task.complete({"answer": 42})
    rest = list(events)
    assert rest[-1].kind == "completed" and rest[-1].is_final
    assert rest[-1].status == "completed"
    assert [e.seq for e in [first, claimed, *rest]] == list(range(2 + len(rest)))
    # A finished item: from the start, the same events; live only, none.
    assert [e.kind for e in swarm.watch(item.id)][-1] == "completed"
    assert list(swarm.watch(item.id, from_start=False)) == []
    assert swarm.wait(item.id).result == {"answer": 42}


def test_wait_gives_up_after_its_timeout(swarm, unique_type):
    item = swarm.submit(unique_type)
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="still running"):
        swarm.wait(item.id, timeout="500ms")
    assert time.monotonic() - started < 5


ECHO_SPEC = {
    "name": "py-echo",
    "inputs": ["who"],
    "steps": [
        {"name": "greet", "run": "echo", "arguments": {"who": "input(who)", "how": 'value("warmly")'}},
        {"name": "sign", "run": "echo", "arguments": {"greeting": "result(greet)"}},
    ],
    "return": "sign",
}


def test_a_workflow_run_from_a_dict_is_run_by_the_nodes(swarm):
    item = swarm.run_workflow(ECHO_SPEC, {"who": "python"}, wait=True, timeout="30s")
    assert item.type == "workflow"
    assert item.status == "completed", item.error
    assert item.result == {"greeting": {"who": "python", "how": "warmly"}}
    steps = [j.step for j in item.journal]
    assert steps.index("greet") < steps.index("sign")


def test_a_workflow_run_from_a_file_is_submitted_with_its_directory(swarm, tmp_path):
    spec = tmp_path / "echo.yaml"
    spec.write_text(
        "name: py-file-echo\n"
        "inputs: [n]\n"
        "steps:\n"
        "  - name: only\n"
        "    run: echo\n"
        "    arguments: { n: input(n) }\n"
        "return: only\n"
    )
    item = swarm.run_workflow(spec, {"n": 3})
    assert item.payload["base_dir"] == str(tmp_path)
    assert "py-file-echo" in item.payload["spec"]
    assert swarm.wait(item.id, timeout="30s").result == {"n": 3}


def test_errors_are_typed_and_carry_the_nodes_message(swarm, unique_type):
    with pytest.raises(NotFound) as missing:
        swarm.get("no-such-item")
    assert '"no-such-item" not found' in str(missing.value)
    assert missing.value.code.name == "NOT_FOUND"

    with pytest.raises(InvalidArgument, match="payload: not valid JSON"):
        swarm.submit(unique_type, RawJson("{not json"))
    with pytest.raises(InvalidArgument, match="type"):
        swarm.submit("no spaces allowed", {})
    with pytest.raises(InvalidArgument, match="cannot be encoded as JSON"):
        swarm.submit(unique_type, {"when": object()})
    with pytest.raises(InvalidArgument, match="unknown"):
        swarm.run_workflow(
            {"name": "bad", "steps": [{"name": "a", "run": "echo", "arguments": {"x": "result(nowhere)"}}]}
        )

    item = swarm.submit(unique_type)
    (task,) = swarm.agent("typed", types=[unique_type]).claim(wait="5s")
    with pytest.raises(StaleToken, match="stale token"):
        swarm.complete(item.id, task.token + 1000, "forged")
    task.complete("real")
    with pytest.raises(FailedPrecondition, match="completed"):
        swarm.cancel(item.id)
    assert swarm.cancel(swarm.submit(unique_type).id).status == "cancelled"


def test_an_unreachable_cluster_is_unavailable_within_the_budget():
    (port,) = free_ports(1)
    with Swarm([f"127.0.0.1:{port}"], total_timeout="1s") as nowhere:
        started = time.monotonic()
        with pytest.raises(Unavailable) as down:
            nowhere.get("x")
        assert time.monotonic() - started < 5
    assert down.value.attempts >= 1
    assert f"127.0.0.1:{port}" in str(down.value)


def test_cluster_status_names_the_leader_and_three_voters(swarm, cluster):
    status = swarm.cluster_status()
    assert status.leader_id in (1, 2, 3)
    assert len(status.voters) == 3
    assert {m.addr for m in status.members} == set(cluster.endpoints)
    one = swarm.cluster_status(endpoint=cluster.endpoints[2])
    assert one.node_id == 3

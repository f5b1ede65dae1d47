"""Agents against the real cluster: many agent processes sharing one queue,
long-poll claims, leases that lapse while their holder is paused, and what
leaving a task's block does."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import python_script
from swarm_client import StaleToken, Swarm

HELPERS = Path(__file__).parent / "helpers"


def test_agent_processes_complete_every_item_exactly_once(cluster, swarm, unique_type, tmp_path):
    items = 300
    workers = 4
    done_file = tmp_path / "all-submitted"

    def submit(n: int) -> str:
        return swarm.submit(unique_type, {"n": n}).id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(submit, range(items // 2)))
        # The agents start with half the queue there and the rest arriving.
        procs = [
            python_script(HELPERS / "agent_worker.py", ",".join(cluster.endpoints), unique_type, f"worker-{w}", str(done_file))
            for w in range(workers)
        ]
        ids += list(pool.map(submit, range(items // 2, items)))
    done_file.touch()
    assert len(set(ids)) == items

    lines = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=60)
        except Exception:
            proc.kill()
            out, err = proc.communicate()
        assert proc.returncode == 0, f"agent process failed ({proc.returncode}):\n{err}"
        lines += [json.loads(line) for line in out.splitlines() if line.strip()]

    failures = [line for line in lines if not line["ok"]]
    assert failures == [], f"completions refused: {failures[:5]}"
    completions = Counter(line["id"] for line in lines)
    twice = [i for i, n in completions.items() if n > 1]
    assert twice == [], f"items completed more than once: {twice[:5]}"
    assert set(completions) == set(ids), f"{len(set(ids) - set(completions))} items were never completed"
    # Every agent took part, and the cluster agrees with what they saw.
    listed = {item.id: item for item in swarm.list(type=unique_type, page_size=64)}
    assert set(listed) == set(ids)
    for item in listed.values():
        assert item.status == "completed", item
        ended = [h for h in item.history if h.ended == "completed"]
        assert len(ended) == 1, item.history
        assert item.result["by"] == ended[0].agent
    by_type = swarm.stats().by_type[unique_type]
    assert (by_type.completed, by_type.pending, by_type.claimed) == (items, 0, 0)


def test_a_long_poll_claim_wakes_when_matching_work_is_submitted(swarm, unique_type):
    agent = swarm.agent("long-poller", types=[unique_type])
    answer = {}

    def claim() -> None:
        started = time.monotonic()
        answer["tasks"] = agent.claim(wait="10s")
        answer["took"] = time.monotonic() - started

    waiter = threading.Thread(target=claim)
    waiter.start()
    time.sleep(0.5)
    item = swarm.submit(unique_type, {"wake": "up"})
    waiter.join(timeout=15)
    assert not waiter.is_alive(), "the claim did not return"
    tasks = answer["tasks"]
    assert [t.id for t in tasks] == [item.id]
    print(f"long poll answered {answer['took']:.2f}s after it started (submitted at 0.5s)")
    with tasks[0] as task:
        assert task.payload == {"wake": "up"}
        task.complete("done")


def test_a_claim_that_finds_nothing_returns_empty_after_its_wait(swarm, unique_type):
    agent = swarm.agent("nobody-home", types=[unique_type])
    started = time.monotonic()
    assert agent.claim(wait="300ms") == []
    assert time.monotonic() - started < 5


def test_a_paused_holder_loses_its_task_and_its_late_complete_is_stale(cluster, swarm, unique_type):
    item = swarm.submit(unique_type, {"slow": True})
    holder = python_script(HELPERS / "paused_holder.py", ",".join(cluster.endpoints), unique_type)
    try:
        first = json.loads(holder.stdout.readline())
        assert first.get("claimed") == item.id, first
        holder.send_signal(signal.SIGSTOP)
        # Past the 1s lease: the leader expires it and another agent gets
        # the item under a newer token.
        rival = swarm.agent("rival", types=[unique_type], lease="30s")
        tasks = rival.claim(wait="10s")
        assert [t.id for t in tasks] == [item.id]
        assert tasks[0].token > first["token"]
        holder.send_signal(signal.SIGCONT)
        out, err = holder.communicate(timeout=30)
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGCONT)
            holder.kill()
            holder.wait()
    said = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert said[0]["lost"] is True, (said, err)
    assert said[1]["complete"] == "stale", (said, err)
    assert "stale" in said[1]["message"]

    with tasks[0] as task:
        task.complete({"by": "rival"})
    ended = swarm.get(item.id)
    assert ended.status == "completed"
    assert ended.result == {"by": "rival"}
    assert [(h.agent, h.ended) for h in ended.history] == [("paused-holder", "expired"), ("rival", "completed")]


def test_a_task_whose_item_is_cancelled_reports_lost(swarm, unique_type):
    item = swarm.submit(unique_type)
    agent = swarm.agent("cancelled-under-me", types=[unique_type], lease="1s")
    (task,) = agent.claim(wait="5s")
    swarm.cancel(item.id, reason="not needed any more")
    assert task.lost.wait(timeout=5), "lost was not set"
    assert "renewal refused" in task.lost_reason
    with pytest.raises(StaleToken):
        task.complete()


def test_renewals_keep_a_short_lease_alive_and_carry_progress(swarm, unique_type):
    item = swarm.submit(unique_type)
    agent = swarm.agent("steady", types=[unique_type], lease="2s")
    (task,) = agent.claim(wait="5s")
    with task:
        task.progress("halfway")
        time.sleep(3)
        assert not task.lost.is_set(), task.lost_reason
        held = swarm.get(item.id)
        assert held.status == "claimed"
        assert held.claim.token == task.token
        assert held.claim.progress == "halfway"
        task.complete({"ok": True})
    assert swarm.get(item.id).status == "completed"


def test_leaving_a_task_block_releases_it_or_fails_it_on_an_exception(swarm, unique_type):
    released = swarm.submit(unique_type, priority=2)
    failed = swarm.submit(unique_type, priority=1, max_attempts=3)
    agent = swarm.agent("leaver", types=[unique_type])

    (task,) = agent.claim(wait="5s")
    assert task.id == released.id
    with task:
        pass
    assert task.outcome == "released"
    # Given back untried: the claim does not count as an attempt.
    back = swarm.get(released.id)
    assert (back.status, back.attempt) == ("pending", 0)

    (task,) = agent.claim(wait="5s")
    assert task.id == released.id  # the higher priority again
    task.complete()

    (task,) = agent.claim(wait="5s")
    assert task.id == failed.id
    with pytest.raises(RuntimeError):
        with task:
            raise RuntimeError("the model timed out")
    assert task.outcome == "failed"
    again = swarm.get(failed.id)
    # Back in the queue for another attempt, with the exception as its error.
    assert (again.status, again.attempt, again.error) == ("pending", 1, "RuntimeError: the model timed out")
    assert again.events[-1].kind == "retrying"


def test_the_task_loop_stops_when_asked(swarm, unique_type):
    for n in range(3):
        swarm.submit(unique_type, {"n": n})
    agent = swarm.agent("looper", types=[unique_type])
    stop = threading.Event()
    seen = []
    started = time.monotonic()
    for task in agent.tasks(stop=stop, wait="10s"):
        with task:
            seen.append(task.payload["n"])
            task.complete()
        if len(seen) == 3:
            # The next claim waits for work that never comes, until this.
            threading.Timer(0.3, stop.set).start()
    assert sorted(seen) == [0, 1, 2]
    assert time.monotonic() - started < 8
    assert list(agent.tasks(max_tasks=0)) == []


def test_a_client_follows_the_cluster_from_any_single_endpoint(cluster, unique_type):
    # Each node alone serves every call: writes are forwarded to the leader.
    for endpoint in cluster.endpoints:
        with Swarm([endpoint]) as one:
            item = one.submit(unique_type, {"via": endpoint})
            (task,) = one.agent(f"via-{endpoint.rsplit(':', 1)[1]}", types=[unique_type]).claim(wait="5s")
            assert task.id == item.id
            task.complete()
            assert one.get(item.id).status == "completed"

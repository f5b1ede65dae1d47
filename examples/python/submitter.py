#!/usr/bin/env python3
"""Submits N "LLM" tasks, follows them to their end and prints a summary.

With ``--key PREFIX`` every item gets the idempotency key ``PREFIX-<i>``:
running the command again submits nothing new and follows the same items
(the line for each says "existing"). ``--watch`` (the default) follows each
item's event stream and prints its events as they happen; ``--poll`` reads
the items back every half second instead and prints the counts when they
change.

    python examples/python/submitter.py -n 20 --key demo
    python examples/python/worker_pool.py        # in another terminal

Connection: ``--endpoints`` (default ``$SWARM_ENDPOINTS``, else the local
cluster of scripts/cluster-up.sh), ``--token`` / ``--ca`` (default
``$SWARM_TOKEN`` / ``$SWARM_CA``). Exits 1 if an item failed or was
cancelled, or the wait timed out.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

from swarm_client import Swarm, SwarmError, WorkItem

LOCAL_CLUSTER = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"

TOPICS = ["the quarterly report", "a support ticket", "a pull request", "the release notes", "a research paper"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoints", default=os.environ.get("SWARM_ENDPOINTS", LOCAL_CLUSTER),
                   help="comma-separated host:port of the nodes (default: $SWARM_ENDPOINTS or the local cluster)")
    p.add_argument("--token", default=os.environ.get("SWARM_TOKEN"), help="bearer token (default: $SWARM_TOKEN)")
    p.add_argument("--ca", default=os.environ.get("SWARM_CA"), help="CA certificate, PEM (default: $SWARM_CA)")
    p.add_argument("--type", default="llm-task", help="work type to submit (default: llm-task)")
    p.add_argument("-n", "--count", type=int, default=10, help="items to submit (default: 10)")
    p.add_argument("--key", metavar="PREFIX", help="idempotency keys PREFIX-0, PREFIX-1, ...")
    p.add_argument("--priority", type=int, default=0)
    follow = p.add_mutually_exclusive_group()
    follow.add_argument("--watch", action="store_true", help="follow each item's events (default)")
    follow.add_argument("--poll", action="store_true", help="read the items back every 0.5s instead")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every item to end (default: 300)")
    return p.parse_args()


def watch_one(swarm: Swarm, item: WorkItem, deadline: float, lock: threading.Lock) -> WorkItem:
    short = item.id[:8]
    try:
        for event in swarm.watch(item.id, from_start=True):
            who = f" by {event.agent}" if event.agent else ""
            token = f" (token {event.token})" if event.token else ""
            detail = f": {event.detail}" if event.detail else ""
            with lock:
                print(f"  {short} {event.kind}{who}{token}{detail}", flush=True)
            if time.monotonic() > deadline:
                break
    except SwarmError as e:
        with lock:
            print(f"  {short} watch failed: {e}", flush=True)
    return swarm.get(item.id)


def poll(swarm: Swarm, items: List[WorkItem], deadline: float) -> List[WorkItem]:
    ids = {i.id for i in items}
    last = None
    while True:
        current = {i.id: i for i in swarm.list(type=items[0].type) if i.id in ids}
        counts = Counter(i.status for i in current.values())
        line = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        if line != last:
            print(f"  {line}", flush=True)
            last = line
        if all(i.done for i in current.values()) or time.monotonic() > deadline:
            return [current[i.id] for i in items if i.id in current]
        time.sleep(0.5)


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    with Swarm(args.endpoints, token=args.token, ca=args.ca) as swarm:
        items: List[WorkItem] = []
        for i in range(args.count):
            payload = {"prompt": f"summarize {TOPICS[i % len(TOPICS)]} #{i}", "n": i}
            key = f"{args.key}-{i}" if args.key else None
            item = swarm.submit(args.type, payload, priority=args.priority, key=key)
            items.append(item)
            how = "submitted" if item.created else "existing"
            print(f"{how} {item.id} ({item.status}){f' key {key}' if key else ''}: {payload['prompt']}", flush=True)

        deadline = time.monotonic() + args.timeout
        print(f"following {len(items)} item(s) until they end ({'polling' if args.poll else 'watching'})", flush=True)
        if args.poll:
            final = poll(swarm, items, deadline)
        else:
            lock = threading.Lock()
            with ThreadPoolExecutor(max_workers=min(len(items), 32) or 1) as pool:
                final = list(pool.map(lambda it: watch_one(swarm, it, deadline, lock), items))

    by_status = Counter(i.status for i in final)
    by_worker: Dict[str, int] = Counter(
        (i.result or {}).get("worker", "?") for i in final if i.status == "completed" and isinstance(i.result, dict)
    )
    elapsed = time.monotonic() - started
    print(f"summary: {len(final)} item(s) in {elapsed:.1f}s: "
          + ", ".join(f"{status} {n}" for status, n in sorted(by_status.items())))
    if by_worker:
        print("completed by: " + ", ".join(f"{w} {n}" for w, n in sorted(by_worker.items())))
    for item in final[:3]:
        if item.status == "completed":
            print(f"e.g. {item.id[:8]} -> {item.result}")
    unfinished = [i for i in final if i.status != "completed"]
    for item in unfinished:
        print(f"not completed: {item.id} {item.status}{f': {item.error}' if item.error else ''}", file=sys.stderr)
    return 1 if unfinished or len(final) < len(items) else 0


if __name__ == "__main__":
    sys.exit(main())

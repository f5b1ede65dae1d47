#!/usr/bin/env python3
"""A pool of worker agents that drain a queue of "LLM" tasks.

Each worker is an agent of its own (``pool-<pid>-<n>``) that long-polls for
items of one type, and works on each as a made-up model call would: a few
steps that take a while, each reported with ``task.progress`` (the note
travels with the next lease renewal, which the task's background thread
sends: no heartbeat code here). A task that is lost meanwhile (its lease
lapsed, or it was cancelled) is dropped, not completed: its work belongs to
whoever holds the item now.

A worker stops when a claim has waited ``--idle`` without finding work, so
the pool ends once the queue is drained; ``--forever`` keeps it waiting.
Ctrl-C or SIGTERM stops it too: tasks in progress are released, for another
agent to take.

    python examples/python/submitter.py -n 20 &
    python examples/python/worker_pool.py --workers 4

Connection: ``--endpoints`` (default ``$SWARM_ENDPOINTS``, else the local
cluster of scripts/cluster-up.sh), ``--token`` / ``--ca`` (default
``$SWARM_TOKEN`` / ``$SWARM_CA``).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import threading
import time
from collections import Counter

from swarm_client import Swarm, SwarmError, Task

LOCAL_CLUSTER = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"

STEPS = ["reading the document", "calling the model", "checking the answer"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoints", default=os.environ.get("SWARM_ENDPOINTS", LOCAL_CLUSTER),
                   help="comma-separated host:port of the nodes (default: $SWARM_ENDPOINTS or the local cluster)")
    p.add_argument("--token", default=os.environ.get("SWARM_TOKEN"), help="bearer token (default: $SWARM_TOKEN)")
    p.add_argument("--ca", default=os.environ.get("SWARM_CA"), help="CA certificate, PEM (default: $SWARM_CA)")
    p.add_argument("--type", default="llm-task", help="work type to claim (default: llm-task)")
    p.add_argument("--workers", type=int, default=4, help="agents in the pool (default: 4)")
    p.add_argument("--lease", default="10s", help="lease per task, renewed while it runs (default: 10s)")
    p.add_argument("--idle", default="3s", help="a worker stops after waiting this long for work (default: 3s)")
    p.add_argument("--forever", action="store_true", help="never stop for lack of work (Ctrl-C stops)")
    p.add_argument("--think", type=float, default=0.4, help="mean seconds per fake model step (default: 0.4)")
    return p.parse_args()


def fake_llm_call(task: Task, stop: threading.Event, think: float, rng: random.Random) -> dict:
    """Pretends to be a model call in a few steps; None when interrupted."""
    words = 0
    for n, step in enumerate(STEPS, 1):
        task.progress(f"step {n}/{len(STEPS)}: {step}")
        # Waits that wake for a stop or a lost lease, not a blind sleep.
        if stop.wait(rng.uniform(0.5, 1.5) * think) or task.lost.is_set():
            return None
        words += rng.randint(20, 80)
    prompt = (task.payload or {}).get("prompt", "")
    return {"summary": f"{words} words about: {prompt}", "words": words}


def worker(swarm: Swarm, name: str, args: argparse.Namespace, stop: threading.Event, done: Counter) -> None:
    agent = swarm.agent(name, types=[args.type], lease=args.lease)
    rng = random.Random(name)
    while not stop.is_set():
        try:
            tasks = agent.claim(wait="30s" if args.forever else args.idle, stop=stop)
        except SwarmError as e:
            print(f"{name}: claim failed: {e}", flush=True)
            stop.wait(1.0)
            continue
        if not tasks:
            if args.forever:
                continue
            print(f"{name}: no work for {args.idle}, stopping", flush=True)
            return
        for task in tasks:
            with task:
                print(f"{name}: took {task.id[:8]} (token {task.token}, attempt {task.attempt}): "
                      f"{(task.payload or {}).get('prompt', '')}", flush=True)
                result = fake_llm_call(task, stop, args.think, rng)
                if task.lost.is_set():
                    print(f"{name}: lost {task.id[:8]}: {task.lost_reason}; dropping its result", flush=True)
                    continue
                if result is None:
                    print(f"{name}: stopping; releasing {task.id[:8]}", flush=True)
                    continue  # leaving the block releases it
                result["worker"] = name
                try:
                    task.complete(result)
                except SwarmError as e:
                    print(f"{name}: could not complete {task.id[:8]}: {e}", flush=True)
                    continue
                done[name] += 1
                print(f"{name}: completed {task.id[:8]}: {result['summary']}", flush=True)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    done: Counter = Counter()
    started = time.monotonic()
    with Swarm(args.endpoints, token=args.token, ca=args.ca) as swarm:
        names = [f"pool-{os.getpid()}-{n}" for n in range(1, args.workers + 1)]
        threads = [threading.Thread(target=worker, args=(swarm, name, args, stop, done), name=name) for name in names]
        print(f"worker pool: {args.workers} agents claiming {args.type!r} from {','.join(swarm.endpoints)}", flush=True)

        def interrupted(signum: int, _frame: object) -> None:
            if not stop.is_set():
                print(f"{signal.Signals(signum).name}: stopping, releasing tasks in progress", flush=True)
            stop.set()

        # Both set the stop event the workers watch (a process started in
        # the background by a script has Ctrl-C's SIGINT ignored otherwise).
        signal.signal(signal.SIGINT, interrupted)
        signal.signal(signal.SIGTERM, interrupted)
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
    elapsed = time.monotonic() - started
    total = sum(done.values())
    print(f"worker pool done: {total} task(s) completed in {elapsed:.1f}s "
          f"({', '.join(f'{n}: {done[n]}' for n in names)})", flush=True)


if __name__ == "__main__":
    main()

"""A holder process for test_agents.py that the test pauses (SIGSTOP) while
it holds an item, as a long GC pause or a stalled VM would: it claims one
item of TYPE under a 1s lease, says so, waits for its task to report
``lost``, then tries to complete it anyway. One JSON line per step.

usage: paused_holder.py ENDPOINTS TYPE
"""

import json
import sys

from swarm_client import StaleToken, Swarm, SwarmError


def say(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    endpoints, kind = sys.argv[1:3]
    with Swarm(endpoints) as swarm:
        agent = swarm.agent("paused-holder", types=[kind], lease="1s")
        tasks = agent.claim(wait="10s")
        if not tasks:
            say(claimed=None)
            return
        task = tasks[0]
        say(claimed=task.id, token=task.token)
        # The test stops this process here, past the lease, and continues
        # it once another agent holds the item.
        lost = task.lost.wait(timeout=20)
        say(lost=lost, reason=task.lost_reason)
        try:
            task.complete({"by": "paused-holder"})
            say(complete="ok")
        except StaleToken as e:
            say(complete="stale", message=str(e))
        except SwarmError as e:
            say(complete=type(e).__name__, message=str(e))


if __name__ == "__main__":
    main()

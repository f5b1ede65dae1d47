"""An agent process for test_agents.py: claims items of one type until the
queue is drained and DONE_FILE exists, completes each, and prints one JSON
line per completion it attempted: {"id", "token", "ok"} or {"id", "token",
"error", "kind"}.

usage: agent_worker.py ENDPOINTS TYPE AGENT DONE_FILE
"""

import json
import os
import random
import sys
import time

from swarm_client import Swarm, SwarmError


def main() -> None:
    endpoints, kind, name, done_file = sys.argv[1:5]
    rng = random.Random(name)
    with Swarm(endpoints) as swarm:
        agent = swarm.agent(name, types=[kind], lease="30s")
        while True:
            tasks = agent.claim(max=rng.randint(1, 3), wait="1s")
            if not tasks:
                if os.path.exists(done_file):
                    return
                continue
            for task in tasks:
                with task:
                    time.sleep(rng.random() * 0.005)
                    line = {"id": task.id, "token": task.token}
                    try:
                        task.complete({"by": name, "n": task.payload["n"]})
                        line["ok"] = True
                    except SwarmError as e:
                        line.update(ok=False, error=str(e), kind=type(e).__name__)
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()

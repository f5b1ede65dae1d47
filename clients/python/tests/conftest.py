"""A three-node cluster of real ``swarmd`` processes for the whole test
session, as the Rust harness (tests/src/lib.rs) starts them: free
127.0.0.1 ports below the ephemeral range, a temporary directory, node 1
bootstraps and the others join it, Raft timings slow enough for a loaded
two-core machine.

The binary is ``$SWARMD_BIN`` (the nextest setup script builds it), else
``target/debug/swarmd``. Every node is killed at the end by the PID recorded
when it was spawned, and reaped; each also gets SIGKILL from the kernel if
this process dies first (PR_SET_PDEATHSIG), so no node outlives a killed
test run (util-linux's setpriv sets that). A SIGTERM to pytest ends the
session as Ctrl-C does, tearing the cluster down. On a failed session the nodes' log tails are printed and the
directory is kept.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from swarm_client import Swarm, SwarmError

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 30.0
NODES = 3


def swarmd_binary() -> Path:
    given = os.environ.get("SWARMD_BIN")
    binary = Path(given) if given else REPO / "target" / "debug" / "swarmd"
    if not binary.is_file():
        how = "set SWARMD_BIN" if given else "build it: cargo build -p swarm-node --bin swarmd"
        raise RuntimeError(f"swarmd not found at {binary}: {how}")
    return binary


def free_ports(n: int) -> List[int]:
    """``n`` ports that were free a moment ago, below the ephemeral range so
    that no outgoing connection is given one meanwhile."""
    floor = 10_000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_start = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_start = 32_768
    held: List[socket.socket] = []
    ports: List[int] = []
    try:
        for _ in range(10_000):
            if len(ports) == n:
                break
            port = random.randrange(floor, ephemeral_start)
            if port in ports:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            held.append(s)
            ports.append(port)
    finally:
        for s in held:
            s.close()
    if len(ports) != n:
        raise RuntimeError(f"found only {len(ports)} free ports of {n}")
    return ports


#: util-linux's setpriv execs its command with a parent-death signal set.
#: (Popen's preexec_fn could set it too, but forking a process whose gRPC
#: threads are busy can abort the child.)
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def spawn_with_parent_death(args: List[str], **kwargs) -> subprocess.Popen:
    """Popen whose child the kernel kills if this process dies first (where
    setpriv is there). The PID is the command's own: setpriv execs it."""
    if _SETPRIV is not None:
        args = [_SETPRIV, "--pdeathsig", "KILL", "--", *args]
    return subprocess.Popen(args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a test runner's timeout) ends the run as Ctrl-C does, so the
    # cluster fixture's teardown still kills the nodes.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


class Cluster:
    """Three swarmd processes and where they listen."""

    def __init__(self, binary: Path, directory: Path):
        self.binary = binary
        self.dir = directory
        ports = free_ports(2 * NODES)
        self.client_ports = ports[:NODES]
        self.peer_ports = ports[NODES:]
        self.endpoints = [f"127.0.0.1:{p}" for p in self.client_ports]
        self.processes: Dict[int, subprocess.Popen] = {}

    def log_path(self, node: int) -> Path:
        return self.dir / f"node{node}.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_") or k == "SWARM_LOG"}
        env["NO_COLOR"] = "1"
        for node in range(1, NODES + 1):
            args = [
                str(self.binary),
                "--id", str(node),
                "--listen", self.endpoints[node - 1],
                "--peer-listen", f"127.0.0.1:{self.peer_ports[node - 1]}",
                "--data-dir", str(self.dir / f"node{node}"),
                "--capabilities", f"exec,node{node}",
                "--heartbeat", "50ms",
                "--election-min", "250ms",
                "--election-max", "500ms",
                "--log-format", "text",
            ]
            args += ["--bootstrap"] if node == 1 else ["--join", self.endpoints[0]]
            log = open(self.log_path(node), "ab")
            try:
                log.write(f"---- pytest: starting node {node}: {' '.join(args)}\n".encode())
                log.flush()
                self.processes[node] = spawn_with_parent_death(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
                )
            finally:
                log.close()
        self.wait_healthy()

    def wait_healthy(self) -> None:
        """Until every node names the same leader and sees three voters."""
        deadline = time.monotonic() + START_TIMEOUT
        why = "not asked yet"
        with Swarm(self.endpoints) as probe:
            while time.monotonic() < deadline:
                for node, process in self.processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(f"node {node} exited ({process.returncode}) while the cluster started")
                try:
                    statuses = [probe.cluster_status(endpoint=e) for e in self.endpoints]
                    leaders = {s.leader_id for s in statuses}
                    voters = [len(s.voters) for s in statuses]
                    if len(leaders) == 1 and 0 not in leaders and all(v == NODES for v in voters):
                        return
                    why = f"leaders {sorted(leaders)}, voters seen {voters}"
                except SwarmError as e:
                    why = str(e)
                time.sleep(0.2)
        raise RuntimeError(f"the cluster did not become healthy within {START_TIMEOUT:.0f}s: {why}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()  # SIGKILL to the recorded PID
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def log_tails(self, lines: int = 30) -> str:
        out = []
        for node in self.processes:
            try:
                text = self.log_path(node).read_text(errors="replace").splitlines()[-lines:]
            except OSError as e:
                text = [f"(no log: {e})"]
            out.append(f"---- {self.log_path(node)} (last {lines} lines)\n" + "\n".join(text))
        return "\n".join(out)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest):
    directory = Path(tempfile.mkdtemp(prefix="swarm-py-"))
    c = Cluster(swarmd_binary(), directory)
    try:
        c.start()
    except BaseException:
        c.stop()
        sys.stderr.write(c.log_tails() + "\n")
        raise
    yield c
    c.stop()
    if request.session.testsfailed:
        sys.stderr.write(c.log_tails() + f"\n(the cluster's directory is kept: {directory})\n")
    else:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture()
def swarm(cluster: Cluster):
    with Swarm(cluster.endpoints) as client:
        yield client


_counter = [0]


@pytest.fixture()
def unique_type(request: pytest.FixtureRequest) -> str:
    """A work type no other test uses, so that tests never claim each
    other's items."""
    _counter[0] += 1
    name = request.node.name.replace("[", "-").replace("]", "")[:60]
    return f"py-{name}-{os.getpid()}-{_counter[0]}"


def python_script(path: Path, *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """A Python helper process (this interpreter) with its output piped."""
    return spawn_with_parent_death(
        [sys.executable, str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

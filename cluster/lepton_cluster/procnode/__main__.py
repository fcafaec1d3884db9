"""`python -m lepton_cluster.procnode [run|down] --name local-0`: the process-runtime node agent.

run (default): register the Node and run the pods bound to it until SIGTERM/SIGINT (pods keep running).
down: stop the agent, kill every pod it runs, remove its namespaces, bridge, state and the Node.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from ..config import ClusterConfig
from .settings import DEFAULT_NODE_IP, DEFAULT_POD_CIDR, AgentSettings, default_state_dir


def parse(argv: list[str] | None) -> tuple[str, AgentSettings]:
    cfg = ClusterConfig.from_env()
    p = argparse.ArgumentParser(
        prog="python -m lepton_cluster.procnode",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", nargs="?", choices=("run", "down"), default="run")
    p.add_argument("--name", default=os.environ.get("LEPTON_PROCNODE_NAME", "local-0"), help="Node name")
    p.add_argument("--kubeconfig", type=Path, default=Path(os.environ.get("KUBECONFIG", cfg.admin_kubeconfig)))
    p.add_argument("--state-dir", type=Path, help="default <run dir>/procnode/<name>")
    p.add_argument(
        "--pod-cidr",
        default=os.environ.get("LEPTON_PROCNODE_CIDR", DEFAULT_POD_CIDR),
        help="a /24 for pod addresses, put on the agent's bridge (default %(default)s)",
    )
    p.add_argument("--node-ip", default=DEFAULT_NODE_IP, help="the Node's InternalIP (loopback)")
    p.add_argument("--no-taint", action="store_true", help=f"no {'lepton.ai/runtime'} NoSchedule taint")
    a = p.parse_args(argv)
    state = a.state_dir or default_state_dir(cfg.run_dir, a.name)
    s = AgentSettings(
        name=a.name,
        kubeconfig=a.kubeconfig.resolve(),
        state_dir=state.resolve(),
        pod_cidr=a.pod_cidr,
        node_ip=a.node_ip,
        taint=not a.no_taint,
    )
    return a.command, s


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s: %(message)s")
    command, settings = parse(argv)
    if os.geteuid() != 0:
        print("the process node agent needs root (network namespaces, mounts)", file=sys.stderr)
        return 1
    from .agent import Agent, AgentError
    from .teardown import down

    if command == "down":
        left = down(settings)
        for item in left:
            print(f"procnode down: left behind: {item}", file=sys.stderr)
        return 1 if left else 0
    agent = Agent(settings)

    def stop(_sig: int, _frame: object) -> None:
        agent.stop()
        # a watch blocks on a socket read: leave now; pods keep running and are adopted on the next start
        logging.getLogger("procnode").info("agent stopping (pods keep running)")
        time.sleep(0.2)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        agent.run()
    except AgentError as e:
        print(f"procnode: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The environment contract between the operator's pods and the trainer.

Defined once, here; the operator's pod builder imports it and a test checks both sides agree.
The ``PET_*`` names are torchrun's own (``torchrun`` reads ``PET_<OPTION>`` for every option), so
any torchrun script runs unchanged in our pods and our trainer runs under plain torchrun.
This module must stay free of heavy imports: the operator imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# torchrun options, read by torch.distributed.run from the environment.
NNODES: Final = "PET_NNODES"  # "N:N": the epoch's fixed world size in pods (the operator resizes by new epochs)
NPROC_PER_NODE: Final = "PET_NPROC_PER_NODE"
RDZV_BACKEND: Final = "PET_RDZV_BACKEND"  # always "c10d"
RDZV_ENDPOINT: Final = "PET_RDZV_ENDPOINT"  # host:port of this epoch's rendezvous store
RDZV_ID: Final = "PET_RDZV_ID"  # unique per job and epoch
RDZV_CONF: Final = "PET_RDZV_CONF"  # "join_timeout=..,last_call_timeout=.."
MAX_RESTARTS: Final = "PET_MAX_RESTARTS"  # "0" in operator pods: a failed worker fails the pod -> a new epoch
MONITOR_INTERVAL: Final = "PET_MONITOR_INTERVAL"

# Lepton's own.
JOB_NAME: Final = "LEPTON_JOB_NAME"
JOB_ID: Final = "LEPTON_JOB_ID"  # the TrainingJob's uid
NAMESPACE: Final = "LEPTON_NAMESPACE"
REPLICA_INDEX: Final = "LEPTON_REPLICA_INDEX"  # this pod's index in the epoch, 0..replicas-1
REPLICAS: Final = "LEPTON_REPLICAS"  # world size (pods) of this epoch
RESTART_EPOCH: Final = "LEPTON_RESTART_EPOCH"
CHECKPOINT_DIR: Final = "LEPTON_CHECKPOINT_DIR"
PROGRESS_FILE: Final = "LEPTON_PROGRESS_FILE"  # where the trainer writes its progress JSON

# Optional trainer settings (not injected by the operator; defaults are right in a pod).
PROGRESS_LISTEN: Final = "LEPTON_PROGRESS_LISTEN"  # "host:port" of GET /progress, "off" disables
POD_IP: Final = "LEPTON_POD_IP"  # the pod's own address (downward API): GET /progress listens only there
TERMINATION_LOG: Final = "LEPTON_TERMINATION_LOG"  # where the final result goes (default below)
DATA_CACHE: Final = "LEPTON_DATA_CACHE"  # directory for decoded sample data (fast cold start)
ZYGOTE: Final = "LEPTON_ZYGOTE"  # "0" stops the launcher from starting the pre-imported fork server
ZYGOTE_SOCKET: Final = "LEPTON_ZYGOTE_SOCKET"  # set by the launcher for the workers
PROGRESS_SERVED: Final = "LEPTON_PROGRESS_SERVED"  # "1", set by the launcher when it serves the progress file

# Set by the launcher: torch's shared rendezvous store made restarted workers dial dead ports.
DISABLE_SHARED_RDZV_STORE: Final = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"

# Every variable the operator injects into a worker pod.
INJECTED: Final[frozenset[str]] = frozenset(
    {
        NNODES,
        NPROC_PER_NODE,
        RDZV_BACKEND,
        RDZV_ENDPOINT,
        RDZV_ID,
        RDZV_CONF,
        MAX_RESTARTS,
        MONITOR_INTERVAL,
        JOB_NAME,
        JOB_ID,
        NAMESPACE,
        REPLICA_INDEX,
        REPLICAS,
        RESTART_EPOCH,
        CHECKPOINT_DIR,
        PROGRESS_FILE,
    }
)

# Injected from the pod's own fields (downward API fieldPath), not as values.
INJECTED_FIELDS: Final[dict[str, str]] = {POD_IP: "status.podIP"}

# Names a user may not set in spec.env: ours, and the ones torchrun sets for each worker.
RESERVED_PREFIXES: Final[tuple[str, ...]] = ("PET_", "LEPTON_", "TORCHELASTIC_")
RESERVED_NAMES: Final[frozenset[str]] = frozenset(
    {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT"}
)

RDZV_PORT: Final = 29400
PROGRESS_PORT: Final = 29500  # the trainer's progress endpoint (HTTP GET /progress)
TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"


def default_progress_listen(env: Mapping[str, str]) -> str:
    """The pod's own address on the progress port (the operator polls it there); all addresses outside a pod."""
    return f"{env.get(POD_IP) or '0.0.0.0'}:{PROGRESS_PORT}"


def is_reserved(name: str) -> bool:
    """True when a user-supplied env var name would clash with the contract."""
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES)

"""Names shared across the operator: API group, labels, annotations, condition types."""

from __future__ import annotations

from typing import Final, Literal

GROUP: Final = "lepton.ai"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

TRAININGJOB_KIND: Final = "TrainingJob"
TRAININGJOB_PLURAL: Final = "trainingjobs"
INFERENCESERVICE_KIND: Final = "InferenceService"
INFERENCESERVICE_PLURAL: Final = "inferenceservices"

CONTROLLER_NAME: Final = "lepton.ai/trainingjob-controller"  # the default spec.managedBy
KUEUE_API: Final = "kueue.x-k8s.io/v1beta2"  # Kueue's Workloads, ResourceFlavors, WorkloadPriorityClasses
MANAGER: Final = "lepton-operator"  # field manager and app.kubernetes.io/managed-by value

# Labels on every child.
LABEL_JOB: Final = "lepton.ai/job-name"
LABEL_REPLICA: Final = "lepton.ai/replica-index"
LABEL_EPOCH: Final = "lepton.ai/restart-epoch"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"

# Well-known node labels and taints.
GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
CAPACITY_TYPE_LABEL: Final = "lepton.ai/capacity-type"
# Well-known spot labels of cloud node provisioners: (label, value meaning spot). Read for cost besides ours.
SPOT_NODE_LABELS: Final[tuple[tuple[str, str], ...]] = (
    (CAPACITY_TYPE_LABEL, "spot"),
    ("karpenter.sh/capacity-type", "spot"),  # Karpenter (any cloud)
    ("eks.amazonaws.com/capacityType", "SPOT"),  # EKS managed node groups
    ("cloud.google.com/gke-spot", "true"),  # GKE Spot VMs
    ("cloud.google.com/gke-preemptible", "true"),  # GKE preemptible VMs (spot's predecessor)
)
HOSTNAME_LABEL: Final = "kubernetes.io/hostname"

# Condition types on a TrainingJob.
COND_SUSPENDED: Final = "Suspended"
COND_SCHEDULED: Final = "PodsScheduled"
COND_RUNNING: Final = "Running"
COND_RESTARTING: Final = "Restarting"
COND_SUCCEEDED: Final = "Succeeded"
COND_FAILED: Final = "Failed"
COND_INVALID: Final = "InvalidSpec"
COND_BUDGET: Final = "BudgetExceeded"
COND_BAD_PROGRESS: Final = "InvalidProgress"  # the trainer reported fields out of bounds (left out of status)
COND_REPLICA_FAILURE: Final = "ReplicaFailure"  # the API server refused to create a worker (as a ReplicaSet's)
COND_GANG: Final = "GangScheduling"  # the epoch's workers are one PodGroup (True) or the API is not served (False)
#: podgroup: PodGroups are served and used; unserved: not served (older cluster, gate off); disabled: by the operator
GangMode = Literal["podgroup", "unserved", "disabled"]

# InferenceService: the label on its Deployment, Service and pods; condition types.
LABEL_ISVC: Final = "lepton.ai/inferenceservice"
COND_READY: Final = "Ready"
COND_MODEL_LOADED: Final = "ModelLoaded"

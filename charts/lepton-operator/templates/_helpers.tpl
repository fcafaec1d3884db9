{{/* Chart name. */}}
{{- define "lepton-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: prefix of every object (also of the cluster-scoped ones, so two releases never collide). */}}
{{- define "lepton-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lepton-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels. Never app.kubernetes.io/managed-by=lepton-operator: that marks the operator's children. */}}
{{- define "lepton-operator.labels" -}}
helm.sh/chart: {{ include "lepton-operator.chart" . }}
{{ include "lepton-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "lepton-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lepton-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lepton-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lepton-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The one watched namespace of rbac.scope=namespace. */}}
{{- define "lepton-operator.watchNamespace" -}}
{{- default .Release.Namespace .Values.rbac.namespace -}}
{{- end -}}

{{/* LEPTON_NAMESPACES: a JSON list; [] = all namespaces. */}}
{{- define "lepton-operator.namespacesJson" -}}
{{- if eq .Values.rbac.scope "namespace" -}}
{{- list (include "lepton-operator.watchNamespace" .) | toJson -}}
{{- else -}}
{{- .Values.operator.namespaces | toJson -}}
{{- end -}}
{{- end -}}

{{- define "lepton-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The namespaced RBAC rules (ClusterRole in scope=cluster, Role in scope=namespace). Every verb is deliberate;
docs/chart.md has the same table. Derived from operator/lepton_operator/{handlers,kube}/ and checked by
tests/e2e (the operator runs every e2e scenario with this identity).
*/}}
{{- define "lepton-operator.namespacedRules" -}}
# TrainingJobs: list+watch feed kopf's index and event handler (no get: the operator never reads one by name);
# delete removes a finished job after spec.ttlSecondsAfterFinished. No create/update/patch of the spec.
- apiGroups: ["lepton.ai"]
  resources: ["trainingjobs"]
  verbs: ["list", "watch", "delete"]
# One merge-patch of .status per reconcile pass.
- apiGroups: ["lepton.ai"]
  resources: ["trainingjobs/status"]
  verbs: ["patch"]
# Worker pods and the Service carry an ownerReference with blockOwnerDeletion=true; where the
# OwnerReferencesPermissionEnforcement admission plugin is on, setting it needs update on the owner's
# finalizers subresource. Grants nothing else (the operator adds no finalizers).
- apiGroups: ["lepton.ai"]
  resources: ["trainingjobs/finalizers"]
  verbs: ["update"]
# InferenceServices: list+watch feed kopf's index, event handler and the per-service autoscaler. Read-only spec.
- apiGroups: ["lepton.ai"]
  resources: ["inferenceservices"]
  verbs: ["list", "watch"]
# One merge-patch of an InferenceService's .status per reconcile pass (conditions, replicas, URL, cost).
- apiGroups: ["lepton.ai"]
  resources: ["inferenceservices/status"]
  verbs: ["patch"]
# The Deployment and Service of an InferenceService carry a blocking ownerReference (see trainingjobs/finalizers).
- apiGroups: ["lepton.ai"]
  resources: ["inferenceservices/finalizers"]
  verbs: ["update"]
# An InferenceService's Deployment: list+watch (label-selected, kopf index), create once, merge-patch for replicas
# (autoscaler) and a new template (model or image change: rolling update). Deleted by the garbage collector.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch"]
# Worker pods: list+watch (label-selected managed-by=lepton-operator, kopf index), create `<job>-<epoch>-<rank>`,
# delete on a new epoch, suspend, scale-down or node loss. Pods are never patched or updated. In scope=cluster
# the cluster-wide list also measures free GPUs for elastic sizing.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "create", "delete"]
# Gang scheduling (Kubernetes v1.37, GenericWorkload): one PodGroup `<job>-<epoch>` per epoch, created only (409 =
# exists); deleted by the garbage collector via its ownerReference. Discovery of scheduling.k8s.io/v1beta1 needs
# no rule (system:discovery). Without the API the rule is unused.
- apiGroups: ["scheduling.k8s.io"]
  resources: ["podgroups"]
  verbs: ["create"]
{{- if .Values.kueue.enabled }}
# Kueue (kueue.enabled, docs/kueue.md): the Workload of each queued TrainingJob: list+watch (label-selected), created
# once, owned by the job (deleted by the garbage collector), patched only for spec.active (false while the job is
# suspended: the quota goes back); a merge-patch of its status (PodsReady, Finished, reclaimablePods, the
# admission cleared once an evicted job's workers are gone), as Kueue's job framework does.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads/status"]
  verbs: ["patch"]
{{- end }}
# The job's headless Service (rendezvous DNS): created once, deleted by the garbage collector via its ownerReference.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create"]
# That Service has no selector: the operator writes its EndpointSlices `<job>-dns-<n>` (the current epoch's workers
# and their pod IPs, for DNS), list+watch (label-selected), create, merge-patch of the endpoints when they change;
# deleted by the garbage collector via their ownerReference. Only slices it creates and labels are touched.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch", "create", "patch"]
# One Event per status transition (kubectl describe). Create only: every Event is new.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/* The cluster-scoped rules every mode needs. */}}
{{- define "lepton-operator.nodeRules" -}}
# Nodes: list+watch for GPU capacity (elastic sizing, costPolicy) and fast node-loss failover
# (NotReady, unreachable taints, deletion). Read-only: never patched, cordoned or deleted.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["list", "watch"]
{{- if .Values.kueue.enabled }}
# Kueue: get by name the admitted ResourceFlavor (its node labels and tolerations go on the workers) and the
# job's WorkloadPriorityClass (its value becomes the Workload's priority). Read-only, cluster-scoped.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["resourceflavors", "workloadpriorityclasses"]
  verbs: ["get"]
{{- end }}
{{- end -}}

{{/* The leader election Lease's name. */}}
{{- define "lepton-operator.leaseName" -}}
{{- .Values.leaderElection.leaseName | default (include "lepton-operator.fullname" .) -}}
{{- end -}}

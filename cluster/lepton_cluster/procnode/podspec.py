"""From a Pod object to what the agent runs: argv, environment, working dir and bind mounts per container.

Pure: no I/O. The container image is not pulled or unpacked; its software must be installed on the host
(our trainer package is, in the Python environment whose bin/ leads PATH). A container without
`command` gets the image's entrypoint from `IMAGE_ENTRYPOINTS`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import GPU_RESOURCE

#: Image name fragment -> ENTRYPOINT of that image (what a container without `command` runs).
IMAGE_ENTRYPOINTS: dict[str, list[str]] = {
    "lepton-trainer": ["python", "-m", "lepton_trainer.launch"],
    "lepton/trainer": ["python", "-m", "lepton_trainer.launch"],
}
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
TERMINATION_ENV = "LEPTON_TERMINATION_LOG"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class PodSpecError(ValueError):
    """The pod asks for something a process node cannot give (reported as CreateContainerConfigError)."""


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class VolumeSource:
    """Where a pod volume lives on the host. `populate` kinds are filled from the API by the agent."""

    name: str
    path: str
    kind: str  # emptyDir, hostPath, persistentVolumeClaim, configMap, secret, downwardAPI, projected
    create: bool = True  # make the folder when missing
    spec: Mapping[str, Any] = field(default_factory=dict)

    @property
    def populate(self) -> bool:
        return self.kind in ("configMap", "secret", "downwardAPI", "projected")


@dataclass(frozen=True)
class ContainerLaunch:
    name: str
    image: str
    argv: list[str]
    env: dict[str, str]
    workdir: str | None
    mounts: list[Mount]
    termination_path: str
    fallback_to_logs: bool
    readiness: Mapping[str, Any] | None
    liveness: Mapping[str, Any] | None
    ports: dict[str, int]


def volume_sources(pod: Mapping[str, Any], pod_dir: Path, claims_dir: Path) -> dict[str, VolumeSource]:
    """Every volume of the pod as a host folder; the service-account token volume is left out (no token)."""
    ns = pod["metadata"]["namespace"]
    out: dict[str, VolumeSource] = {}
    for vol in pod["spec"].get("volumes") or []:
        name = vol["name"]
        local = str(pod_dir / "volumes" / name)
        if "emptyDir" in vol:
            out[name] = VolumeSource(name, local, "emptyDir")
        elif "hostPath" in vol:
            hp = vol["hostPath"]
            kind = hp.get("type") or ""
            out[name] = VolumeSource(name, hp["path"], "hostPath", create=kind in ("", "DirectoryOrCreate"), spec=hp)
        elif "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]["claimName"]
            out[name] = VolumeSource(name, str(claims_dir / ns / claim), "persistentVolumeClaim")
        elif "projected" in vol:
            sources = vol["projected"].get("sources") or []
            if any("serviceAccountToken" in s for s in sources):
                continue  # no API credentials inside pods on a process node
            out[name] = VolumeSource(name, local, "projected", spec=vol["projected"])
        else:
            kind = next((k for k in ("configMap", "secret", "downwardAPI") if k in vol), None)
            if kind is None:
                raise PodSpecError(
                    f"volume {name!r}: only emptyDir, hostPath, persistentVolumeClaim, configMap, "
                    "secret, downwardAPI and projected volumes are supported on a process node"
                )
            out[name] = VolumeSource(name, local, kind, spec=vol[kind])
    return out


def field_value(pod: Mapping[str, Any], path: str, runtime: Mapping[str, str]) -> str:
    """A downward-API fieldRef, e.g. metadata.name, metadata.labels['x'], status.podIP."""
    meta, spec = pod["metadata"], pod["spec"]
    if m := re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path):
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": runtime.get("podIP", ""),
        "status.podIPs": runtime.get("podIP", ""),
        "status.hostIP": runtime.get("hostIP", ""),
        "status.hostIPs": runtime.get("hostIP", ""),
    }
    if path not in simple:
        raise PodSpecError(f"fieldRef {path!r} is not supported")
    return str(simple[path])


_UNITS = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "m": 1e-3,
}


def quantity(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text).strip())
    if not m or (m.group(2) and m.group(2) not in _UNITS):
        raise PodSpecError(f"cannot read quantity {text!r}")
    return float(m.group(1)) * (_UNITS[m.group(2)] if m.group(2) else 1)


def resource_value(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """A resourceFieldRef (limits.cpu, requests.memory, ...) in units of its divisor, rounded up."""
    section, _, resource = ref["resource"].partition(".")
    amounts = (container.get("resources") or {}).get(section) or {}
    if resource not in amounts:
        return "0"
    value = quantity(amounts[resource]) / quantity(ref.get("divisor") or "1")
    return str(math.ceil(value))


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, `$$` is a literal `$`, others stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(sub, text)


def entrypoint(image: str) -> list[str]:
    for fragment, argv in IMAGE_ENTRYPOINTS.items():
        if fragment in image:
            return list(argv)
    raise PodSpecError(f"image {image!r} has no known entrypoint on a process node; set the container's command")


def gpu_count(container: Mapping[str, Any]) -> int:
    res = container.get("resources") or {}
    amount = (res.get("limits") or {}).get(GPU_RESOURCE) or (res.get("requests") or {}).get(GPU_RESOURCE) or 0
    return int(amount)


def container_launch(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    volumes: Mapping[str, VolumeSource],
    runtime: Mapping[str, str],
    *,
    python_bin: Path,
    termination_file: Path,
    gpus: list[int],
) -> ContainerLaunch:
    """What to run for one container. `runtime` carries podIP/hostIP for the downward API."""
    spec = pod["spec"]
    env: dict[str, str] = {
        "PATH": f"{python_bin}:{SYSTEM_PATH}",
        "HOME": "/root",
        "HOSTNAME": spec.get("hostname") or pod["metadata"]["name"],
        "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
    }
    cpu_limit = ((container.get("resources") or {}).get("limits") or {}).get("cpu")
    if cpu_limit:  # torch and numpy size their thread pools from the machine, not the limit
        env["OMP_NUM_THREADS"] = str(max(1, math.floor(quantity(cpu_limit))))
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
        elif "valueFrom" in item:
            src = item["valueFrom"]
            if "fieldRef" in src:
                env[name] = field_value(pod, src["fieldRef"]["fieldPath"], runtime)
            elif "resourceFieldRef" in src:
                env[name] = resource_value(container, src["resourceFieldRef"])
            else:
                raise PodSpecError(f"env {name}: only fieldRef and resourceFieldRef sources are supported")
        else:
            env[name] = ""
    if container.get("envFrom"):
        raise PodSpecError("envFrom is not supported on a process node")
    termination_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    env.setdefault(TERMINATION_ENV, str(termination_file))
    command = [expand(a, env) for a in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    argv = (command or entrypoint(container.get("image", ""))) + args
    mounts = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"])
        if vol is None:
            continue  # the service-account token volume
        source = str(Path(vol.path) / vm["subPath"]) if vm.get("subPath") else vol.path
        mounts.append(Mount(source, vm["mountPath"], bool(vm.get("readOnly"))))
    ports = {p["name"]: int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")}
    return ContainerLaunch(
        name=container["name"],
        image=container.get("image", ""),
        argv=argv,
        env=env,
        workdir=container.get("workingDir") or None,
        mounts=mounts,
        termination_path=termination_path,
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        readiness=container.get("readinessProbe"),
        liveness=container.get("livenessProbe"),
        ports=ports,
    )

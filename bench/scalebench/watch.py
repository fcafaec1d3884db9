"""A separate process list-watches the workload's pods and jobs and stamps every first ADDED, first Running and
DELETED with the wall clock; a thread of the benchmark drains its queue into `Observed`."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .apiclient import Api

JOB_LABEL = "lepton.ai/job-name"  # the job a pod belongs to when it has no owner (the bare client's pods)
Stamp = tuple[str, str, str, str, float]  # kind, event, name, job, wall time


def job_of(obj: dict[str, Any]) -> str:
    """The controlling owner's name, else the first owner's, else the job label's."""
    meta = obj["metadata"]
    refs = meta.get("ownerReferences") or []
    if refs:
        return str(next((r["name"] for r in refs if r.get("controller")), refs[0]["name"]))
    return str((meta.get("labels") or {}).get(JOB_LABEL, ""))


def _job_running(obj: dict[str, Any]) -> bool:
    st = obj.get("status") or {}
    if st.get("phase") == "Running":  # TrainingJob
        return True
    return any(c.get("type") == "Running" and c.get("status") == "True" for c in st.get("conditions") or [])


async def _events(listed: list[dict[str, Any]], resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The listed objects as ADDED events, then the watch stream's events (one JSON document a line)."""
    for ev in listed:
        yield ev
    buf = b""
    async for chunk in resp.content.iter_any():
        buf += chunk
        *complete, buf = buf.split(b"\n")
        for line in complete:
            if line.strip():
                yield json.loads(line)


async def _watch(api: Api, path: str, kind: str, out: mp.Queue[Stamp]) -> None:
    """List+watch `path`, sending a stamp for ADDED / RUNNING / DELETED."""
    seen: set[str] = set()
    running: set[str] = set()
    async with api.session(limit=2) as session:
        while True:
            async with session.get(path) as resp:
                listing = await resp.json()
            rv = listing["metadata"]["resourceVersion"]
            out.put((kind, "LISTED", "", "", time.time()))
            listed = {o["metadata"]["name"] for o in listing.get("items") or []}
            for name in seen - listed:  # deleted while the watch was down
                seen.discard(name)
                running.discard(name)
                out.put((kind, "DELETED", name, "", time.time()))
            events = [{"type": "ADDED", "object": o} for o in listing.get("items") or []]
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "3000"}
            timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
            async with session.get(path, params=params, timeout=timeout) as resp:
                async for ev in _events(events, resp):
                    t = time.time()
                    if ev["type"] == "ERROR":
                        break  # expired resourceVersion: list again
                    obj = ev["object"]
                    if ev["type"] == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if ev["type"] == "DELETED":
                        seen.discard(name)
                        running.discard(name)
                        out.put((kind, "DELETED", name, "", t))
                        continue
                    if name not in seen:
                        seen.add(name)
                        out.put((kind, "ADDED", name, job_of(obj), t))
                    up = (obj.get("status") or {}).get("phase") == "Running" if kind == "pod" else _job_running(obj)
                    if up and name not in running:
                        running.add(name)
                        out.put((kind, "RUNNING", name, "", t))


def watcher_main(api: Api, paths: list[tuple[str, str]], out: mp.Queue[Stamp]) -> None:
    async def run() -> None:
        await asyncio.gather(*(_watch(api, path, kind, out) for path, kind in paths))

    asyncio.run(run())


@dataclass
class Observed:
    """What the watcher saw, drained from its queue by a thread."""

    pod_created: dict[str, tuple[str, float]] = field(default_factory=dict)  # pod -> (job, time)
    pod_running: dict[str, float] = field(default_factory=dict)
    pod_deleted: dict[str, float] = field(default_factory=dict)
    job_created: dict[str, float] = field(default_factory=dict)
    job_running: dict[str, float] = field(default_factory=dict)
    job_deleted: dict[str, float] = field(default_factory=dict)
    listed: set[str] = field(default_factory=set)  # kinds whose first LIST is done
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, event: str, name: str, job: str, t: float) -> None:
        with self.lock:
            if event == "LISTED":
                self.listed.add(kind)
            elif kind == "pod":
                if event == "ADDED":
                    self.pod_created.setdefault(name, (job, t))
                elif event == "RUNNING":
                    self.pod_running.setdefault(name, t)
                else:
                    self.pod_deleted[name] = t
            elif event == "ADDED":
                self.job_created.setdefault(name, t)
            elif event == "RUNNING":
                self.job_running.setdefault(name, t)
            else:
                self.job_deleted[name] = t


class Watcher:
    """The watcher process for one namespace's pods and (when `job_path` is given) jobs."""

    def __init__(self, api: Api, namespace: str, job_path: str | None) -> None:
        ctx = mp.get_context("spawn")
        self.queue: mp.Queue[Stamp] = ctx.Queue()
        paths = [(f"/api/v1/namespaces/{namespace}/pods", "pod")] + ([(job_path, "job")] if job_path else [])
        self.proc = ctx.Process(target=watcher_main, args=(api, paths, self.queue), daemon=True)
        self.kinds = {kind for _, kind in paths}
        self.seen = Observed()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)

    def __enter__(self) -> Watcher:
        self.proc.start()
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.kinds <= self.seen.listed:  # its first LISTs: what comes next is stamped
            if time.monotonic() > deadline or not self.proc.is_alive():
                self.__exit__()
                raise RuntimeError("the watcher process did not list within 60 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.join(10)
        self._thread.join(5)

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.add(*item)

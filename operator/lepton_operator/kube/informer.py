"""List+watch of one resource in one task, handing every event to a plain callback.

kopf gives every watched object a worker task, a queue, a diff-base copy and a logger, which cost ~40 % of
the operator's CPU when a burst of jobs created thousands of pods (docs/bench.md). The operator's jobs,
children and nodes only feed in-memory indexes, so they are watched here instead: a paginated LIST, then a
WATCH from its resourceVersion with bookmarks, resumed where it stopped, and a new LIST when the server
says the version is gone (410). A relist reports objects that
vanished meanwhile as DELETED, so callers never keep a view of an object that no longer exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Hashable, Iterator, Mapping, ValuesView
from typing import Any, Generic, TypeVar

import aiohttp

from .client import Kube, object_path
from .errors import ApiError, Gone, api_error

log = logging.getLogger("lepton_operator.informer")

Callback = Callable[[str, dict[str, Any]], None]  # (ADDED | MODIFIED | DELETED, object)
WATCH_SECONDS = 300  # the server ends each watch after this; it is resumed from the last version
RETRY_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
PAGE = 500  # objects per LIST page


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Index(Mapping[K, ValuesView[V]], Generic[K, V]):
    """Views of watched objects grouped by a key (e.g. pods by job): key -> the views of its objects.

    Reads like kopf's index (`idx.get(key, [])`, `key in idx`, `.items()`); written by informer callbacks.
    """

    def __init__(self) -> None:
        self._groups: dict[K, dict[str, V]] = {}

    def __getitem__(self, key: K) -> ValuesView[V]:
        return self._groups[key].values()

    def __iter__(self) -> Iterator[K]:
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)

    def view(self, key: K, name: str) -> V | None:
        """The view of one object, or None."""
        group = self._groups.get(key)
        return group.get(name) if group is not None else None

    def put(self, key: K, name: str, view: V) -> None:
        self._groups.setdefault(key, {})[name] = view

    def remove(self, key: K, name: str) -> None:
        group = self._groups.get(key)
        if group is not None:
            group.pop(name, None)
            if not group:
                del self._groups[key]


class CallbackFailed(Exception):
    """The callback raised on an object (a bug): the object stays unknown, so the next LIST delivers it again."""


class Informer:
    """Keeps `callback` told about every object of a collection; `synced` is set after the first LIST."""

    def __init__(
        self,
        kube: Kube,
        api_version: str,
        plural: str,
        callback: Callback,
        *,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> None:
        self.kube, self.callback = kube, callback
        self.path = object_path(api_version, plural, namespace)
        self.params = {"labelSelector": label_selector} if label_selector else {}
        self.synced = asyncio.Event()
        # (namespace, name) -> (resourceVersion last reported, labels): a relist can report a vanished object with
        # the labels callers key it by
        self._known: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}

    def __repr__(self) -> str:
        selector = self.params.get("labelSelector")
        return f"Informer({self.path}{f' {selector}' if selector else ''})"

    async def run(self) -> None:
        """List and watch until cancelled; failures (of the API or of a callback) back off exponentially."""
        rv: str | None = None
        failures = 0
        while True:
            try:
                if rv is None:
                    rv = await self._list()
                rv = await self._watch(rv)
                failures = 0
            except Gone:
                log.info("%s: resourceVersion expired; listing again", self)
                rv = None
                continue
            except CallbackFailed as exc:  # a callback's bug: list again later, which delivers the object again
                log.error("%s: event handling failed (%s); listing again", self, exc, exc_info=exc.__cause__)
                rv = None
            except (aiohttp.ClientError, TimeoutError, ApiError, ValueError) as exc:  # ValueError: a bad JSON line
                log.warning("%s: %s; retrying", self, exc or type(exc).__name__)  # e.g. a CRD not installed yet
            else:
                continue
            delay = min(RETRY_MAX_SECONDS, RETRY_SECONDS * 2**failures)
            failures += 1
            log.info("%s: retrying in %.0fs", self, delay)
            await asyncio.sleep(delay)

    def _deliver(self, kind: str, obj: dict[str, Any]) -> None:
        """Hand one event to the callback; the object counts as known only once the callback took it."""
        meta = obj["metadata"]
        ident = (meta.get("namespace", ""), meta["name"])
        try:
            self.callback(kind, obj)
        except Exception as exc:  # the boundary between the informer and a callback's code
            raise CallbackFailed(f"{kind} {ident[0]}/{ident[1]}: {type(exc).__name__}: {exc}") from exc
        if kind == "DELETED":
            self._known.pop(ident, None)
        else:
            self._known[ident] = meta["resourceVersion"], meta.get("labels") or {}

    async def _list(self) -> str:
        """One consistent LIST in pages of PAGE objects (only a page is ever decoded in memory at once)."""
        listed: dict[tuple[str, str], str] = {}
        failed: list[CallbackFailed] = []
        params = {**self.params, "limit": str(PAGE)}
        while True:
            _, body = await self.kube.request("GET", self.path, params=params)
            for obj in body.get("items") or []:
                meta = obj["metadata"]
                ident = (meta.get("namespace", ""), meta["name"])
                listed[ident] = rv = meta["resourceVersion"]
                if self._known.get(ident, ("",))[0] != rv:
                    self._try(failed, "ADDED", obj)
            params["continue"] = body["metadata"].get("continue") or ""
            if not params["continue"]:
                break
        for ident in self._known.keys() - listed.keys():
            labels = self._known[ident][1]
            gone = {"namespace": ident[0], "name": ident[1], "labels": labels, "resourceVersion": ""}
            self._try(failed, "DELETED", {"metadata": gone})
        self.synced.set()  # one bad object must not hold up every pass of every job
        if failed:
            raise failed[0]
        return str(body["metadata"]["resourceVersion"])

    def _try(self, failed: list[CallbackFailed], kind: str, obj: dict[str, Any]) -> None:
        """Deliver, and go on with the rest of a LIST when the callback fails on one object."""
        try:
            self._deliver(kind, obj)
        except CallbackFailed as exc:
            failed.append(exc)

    async def _watch(self, rv: str) -> str:
        params = {
            **self.params,
            "watch": "1",
            "resourceVersion": rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async for event in self.kube.watch(self.path, params, WATCH_SECONDS + 30):
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                raise api_error(int(obj.get("code") or 500), "WATCH", self.path, json.dumps(obj))
            rv = obj["metadata"]["resourceVersion"]
            if kind != "BOOKMARK":
                self._deliver(kind, obj)
        return rv

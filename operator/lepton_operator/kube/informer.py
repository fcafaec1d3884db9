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
from .errors import ApiError

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

    def put(self, key: K, name: str, view: V) -> None:
        self._groups.setdefault(key, {})[name] = view

    def remove(self, key: K, name: str) -> None:
        group = self._groups.get(key)
        if group is not None:
            group.pop(name, None)
            if not group:
                del self._groups[key]


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


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
        """List and watch until cancelled."""
        rv: str | None = None
        failures = 0
        while True:
            try:
                if rv is None:
                    rv = await self._list()
                    self.synced.set()
                rv = await self._watch(rv)
                failures = 0
            except Gone:
                log.info("%s: resourceVersion expired; listing again", self)
                rv = None
            except (aiohttp.ClientError, TimeoutError, ApiError, ValueError) as exc:
                delay = min(RETRY_MAX_SECONDS, RETRY_SECONDS * 2**failures)  # e.g. a CRD not installed yet
                failures += 1
                log.warning("%s: %s; retrying in %.0fs", self, exc or type(exc).__name__, delay)
                await asyncio.sleep(delay)
            except Exception:  # a callback's bug: keep watching (from a fresh LIST), never die silently
                log.exception("%s: event handling failed; listing again", self)
                rv = None
                await asyncio.sleep(RETRY_SECONDS)

    async def _list(self) -> str:
        """One consistent LIST in pages of PAGE objects (only a page is ever decoded in memory at once)."""
        listed: dict[tuple[str, str], str] = {}
        params = {**self.params, "limit": str(PAGE)}
        while True:
            _, body = await self.kube.request("GET", self.path, params=params)
            for obj in body.get("items") or []:
                meta = obj["metadata"]
                ident = (meta.get("namespace", ""), meta["name"])
                listed[ident] = rv = meta["resourceVersion"]
                if self._known.get(ident, ("",))[0] != rv:
                    self._known[ident] = rv, meta.get("labels") or {}
                    self.callback("ADDED", obj)
            params["continue"] = body["metadata"].get("continue") or ""
            if not params["continue"]:
                break
        for ident in self._known.keys() - listed.keys():
            _, labels = self._known.pop(ident)
            self.callback("DELETED", {"metadata": {"namespace": ident[0], "name": ident[1], "labels": labels}})
        return str(body["metadata"]["resourceVersion"])

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
                if obj.get("code") == 410:
                    raise Gone()
                raise ApiError(int(obj.get("code") or 500), "WATCH", self.path, json.dumps(obj))
            meta = obj["metadata"]
            rv = meta["resourceVersion"]
            if kind == "BOOKMARK":
                continue
            ident = (meta.get("namespace", ""), meta["name"])
            if kind == "DELETED":
                self._known.pop(ident, None)
            else:
                self._known[ident] = rv, meta.get("labels") or {}
            self.callback(kind, obj)
        return rv

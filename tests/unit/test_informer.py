"""The informer's list+watch protocol against a scripted API (the real one is exercised by every e2e test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from lepton_operator.kube.informer import Index, Informer


def pod(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv, "labels": {"job": f"j-{name}"}}}


class ScriptedKube:
    """LIST answers and WATCH streams, in order; records what was asked."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[list[dict[str, Any]]]) -> None:
        self.lists, self.watches = lists, watches
        self.asked: list[tuple[str, dict[str, str]]] = []
        self.done = asyncio.Event()

    async def request(self, method: str, path: str, *, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.asked.append(("LIST", params))
        items = self.lists.pop(0)
        rv = max((int(i["metadata"]["resourceVersion"]) for i in items), default=1)
        return 200, {"metadata": {"resourceVersion": str(rv)}, "items": items}

    async def watch(self, path: str, params: dict[str, str], seconds: float) -> AsyncIterator[dict[str, Any]]:
        self.asked.append(("WATCH", params))
        if not self.watches:
            self.done.set()
            await asyncio.Event().wait()  # a quiet watch, until cancelled
        for event in self.watches.pop(0):
            yield event


async def run(kube: ScriptedKube) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    labels: list[dict[str, str]] = []
    informer = Informer(
        kube,  # type: ignore[arg-type]
        "v1",
        "pods",
        lambda kind, obj: (seen.append((kind, obj["metadata"]["name"])), labels.append(obj["metadata"]["labels"])),
        namespace="ns",
        label_selector="app=x",
    )
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(kube.done.wait(), 5)
    assert informer.synced.is_set()
    assert all(labels), labels  # even a vanished object is reported with the labels callers key it by
    task.cancel()
    return seen


async def test_lists_then_watches_from_the_list_version_and_resumes_after_a_timeout() -> None:
    kube = ScriptedKube(
        lists=[[pod("a", "5")]],
        watches=[
            [{"type": "ADDED", "object": pod("b", "6")}, {"type": "BOOKMARK", "object": pod("", "9")}],
            [{"type": "DELETED", "object": pod("a", "10")}],
        ],
    )
    seen = await run(kube)
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    versions = [params["resourceVersion"] for what, params in kube.asked if what == "WATCH"]
    assert versions == ["5", "9", "10"]  # the bookmark's version resumes the second watch
    assert all(params["labelSelector"] == "app=x" for _, params in kube.asked)


async def test_an_expired_version_lists_again_and_reports_what_vanished_meanwhile() -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    kube = ScriptedKube(
        lists=[[pod("a", "5"), pod("b", "5")], [pod("b", "5"), pod("c", "20")]],
        watches=[[gone]],
    )
    seen = await run(kube)
    # b is unchanged (same version): not reported twice; a vanished while the watch was gone
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c"), ("DELETED", "a")]


def test_index_groups_views_by_key_and_drops_empty_groups() -> None:
    idx: Index[str, int] = Index()
    idx.put("job", "p0", 1)
    idx.put("job", "p1", 2)
    idx.put("job", "p1", 3)  # an update replaces
    assert sorted(idx.get("job", [])) == [1, 3] and "job" in idx
    idx.remove("job", "p0")
    idx.remove("job", "p1")
    assert "job" not in idx and len(idx) == 0 and list(idx.get("job", [])) == []

"""The informer's list+watch protocol against a scripted API (the real one is exercised by every e2e test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lepton_operator.constants import LABEL_EPOCH, LABEL_REPLICA
from lepton_operator.kube import informer as informer_module
from lepton_operator.kube.informer import Index, Informer
from lepton_operator.reconcile.views import pod_view


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


class Flaky:
    """A callback that raises `error` the first time it sees each (name, version) in `poison`."""

    def __init__(self, poison: set[tuple[str, str]], error: type[Exception]) -> None:
        self.poison, self.error = poison, error
        self.took: list[tuple[str, str, str]] = []

    def __call__(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if (meta["name"], meta.get("resourceVersion", "")) in self.poison:
            self.poison.discard((meta["name"], meta["resourceVersion"]))
            raise self.error("bad object")
        self.took.append((kind, meta["name"], meta.get("resourceVersion", "")))


@pytest.mark.parametrize("error", [RuntimeError, ValueError])  # ValueError: once mistaken for a transport error
async def test_an_event_whose_callback_failed_is_delivered_again_by_a_relist(
    error: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(informer_module, "RETRY_SECONDS", 0.001)
    kube = ScriptedKube(
        lists=[[pod("a", "5")], [pod("a", "6")]], watches=[[{"type": "MODIFIED", "object": pod("a", "6")}]]
    )
    callback = Flaky({("a", "6")}, error)
    task = asyncio.create_task(Informer(kube, "v1", "pods", callback).run())  # type: ignore[arg-type]
    await asyncio.wait_for(kube.done.wait(), 5)
    task.cancel()
    assert callback.took == [("ADDED", "a", "5"), ("ADDED", "a", "6")]
    assert [what for what, _ in kube.asked] == ["LIST", "WATCH", "LIST", "WATCH"]


async def test_a_poison_object_in_the_first_list_does_not_hold_up_the_others_or_the_sync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(informer_module, "RETRY_SECONDS", 0.001)
    kube = ScriptedKube(lists=[[pod("a", "5"), pod("b", "5")], [pod("a", "5"), pod("b", "5")]], watches=[])
    callback = Flaky({("a", "5")}, RuntimeError)
    informer = Informer(kube, "v1", "pods", callback)  # type: ignore[arg-type]
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(kube.done.wait(), 5)
    task.cancel()
    assert informer.synced.is_set()
    assert callback.took == [("ADDED", "b", "5"), ("ADDED", "a", "5")]  # a again from the second LIST; b once


@pytest.mark.parametrize("label", ["x", "", "1e3", "-"])
def test_a_malformed_epoch_or_rank_label_gives_a_view_never_an_error(label: str) -> None:
    raw = {"metadata": {"name": "p", "labels": {LABEL_EPOCH: label, LABEL_REPLICA: label}}, "status": {}}
    view = pod_view(raw)
    assert view.epoch == -1 and view.rank == -1

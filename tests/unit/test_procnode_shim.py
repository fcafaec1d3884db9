"""The shim keeps a checkout under /tmp visible inside a pod's private /tmp."""

from __future__ import annotations

from lepton_cluster.procnode.shim import _tops_under_tmp


def test_tops_under_tmp() -> None:
    assert _tops_under_tmp("/tmp/ci/.venv", "/tmp/ci/run/procnode/x", "/work/main/.venv") == ["/tmp/ci"]
    assert _tops_under_tmp("/work/main/.venv", "/var/tmp/x", "/tmp") == []

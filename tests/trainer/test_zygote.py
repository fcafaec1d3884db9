"""The zygote fork server: a proxy's argv, environment and exit code round-trip through a fork."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from lepton_trainer import contract, zygote

from .support import wait_for


def _target(argv: list[str]) -> int:
    Path(os.environ["OUT"]).write_text(" ".join(argv) + f" cwd={os.getcwd()}")
    return int(argv[-1])


@pytest.mark.timeout(30)
def test_proxy_runs_the_worker_in_a_forked_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = str(tmp_path / "zygote.sock")
    pid = os.fork()
    if pid == 0:  # the zygote
        try:
            zygote.serve(sock, lambda: _target)
        finally:
            os._exit(0)
    try:
        wait_for(lambda: os.path.exists(sock), 10, message="zygote socket")
        monkeypatch.setenv(contract.ZYGOTE_SOCKET, sock)
        monkeypatch.setenv("OUT", str(tmp_path / "out.txt"))
        monkeypatch.chdir(tmp_path)
        assert zygote.run_via_zygote(["--workload", "digits", "7"]) == 7
        assert (tmp_path / "out.txt").read_text() == f"--workload digits 7 cwd={tmp_path}"
        assert zygote.run_via_zygote(["0"]) == 0
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_no_zygote_means_run_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(contract.ZYGOTE_SOCKET, raising=False)
    assert zygote.run_via_zygote([]) is None
    monkeypatch.setenv(contract.ZYGOTE_SOCKET, str(tmp_path / "absent.sock"))
    assert zygote.run_via_zygote([]) is None

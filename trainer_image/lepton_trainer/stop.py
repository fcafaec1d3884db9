"""Graceful stop on SIGTERM: checkpoint at the next step boundary, hard exit after a grace period.

SIGTERM is blocked in every thread and taken by a dedicated ``sigwait`` thread, so it is noticed
even while the main thread sits in a blocking collective (where a Python signal handler would
never run). The training loop polls :attr:`StopSignal.requested` between steps; when it is not
training (starting up, or stuck) the watcher ends the process itself after ``grace_s``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

EXIT_CODE = 128 + signal.SIGTERM


class StopSignal:
    """Install once, early in the main thread, before other threads start."""

    def __init__(self, grace_s: float = 10.0) -> None:
        self.grace_s = grace_s
        self.requested = threading.Event()
        self.in_loop = threading.Event()  # set by the training loop while it can honour a stop
        self.done = threading.Event()  # set when the process is about to exit on its own

    def install(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        threading.Thread(target=self._watch, name="sigterm-watch", daemon=True).start()

    def _watch(self) -> None:
        signal.sigwait({signal.SIGTERM})
        log.info("SIGTERM received; stopping at the next step boundary")
        self.requested.set()
        if not self.in_loop.is_set():
            self._exit("SIGTERM outside the training loop; exiting now")
        if not self.done.wait(self.grace_s):
            self._exit(f"no step boundary within {self.grace_s:.0f} s of SIGTERM; exiting")

    @staticmethod
    def _exit(message: str) -> None:
        log.warning(message)
        hard_exit(EXIT_CODE)


def hard_exit(code: int) -> None:
    """Exit now, without interpreter teardown (which can block on a dead peer's process group)."""
    from lepton_trainer.zygote import notify_exit

    logging.shutdown()
    notify_exit(code)
    os._exit(code)

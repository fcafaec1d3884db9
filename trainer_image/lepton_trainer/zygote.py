"""A warm fork server for worker processes: ``import torch`` once per pod, not once per restart.

Worker cold start is what an elastic restart waits for, and most of it is importing torch
(2.5-4 s of CPU on 2 busy cores). The launcher forks a *zygote* before it execs torchrun; the
zygote imports the trainer (and torch) once and listens on a unix socket. When torchrun starts a
worker, ``lepton_trainer.train`` finds ``LEPTON_ZYGOTE_SOCKET`` and becomes a thin *proxy*: it
sends its argv, environment and stdio file descriptors; the zygote forks a child that adopts them
and runs the training with everything already imported. The proxy relays SIGTERM/SIGINT to the
child and exits with the child's exit code, so torchrun sees an ordinary worker. If the proxy
dies (SIGKILL), the child notices the closed socket and exits at once.

The zygote imports torch but runs no torch ops and starts no threads before forking, so the
children are ordinary single-threaded processes (CUDA is initialised only in the children).
Without a zygote (socket missing, refused) the worker simply runs in-process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable, Sequence

from lepton_trainer import contract

_EXIT = struct.Struct(">i")
_FDS = 3  # stdin, stdout, stderr
_proxy: socket.socket | None = None  # in a zygote child: the connection to its proxy


def notify_exit(code: int) -> None:
    """Tell the proxy our exit code before an ``os._exit`` (no-op outside a zygote child)."""
    if _proxy is not None:
        with contextlib.suppress(OSError):
            _proxy.sendall(_EXIT.pack(code))


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _send_msg(conn: socket.socket, payload: bytes, fds: Sequence[int] = ()) -> None:
    header = struct.pack(">I", len(payload))
    socket.send_fds(conn, [header + payload], list(fds)) if fds else conn.sendall(header + payload)


# --- proxy side (the process torchrun started) ---------------------------------------------------
def run_via_zygote(argv: Sequence[str]) -> int | None:
    """Run the worker in a child of the zygote; None when there is no usable zygote."""
    path = os.environ.get(contract.ZYGOTE_SOCKET)
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    env = {k: v for k, v in os.environ.items() if k != contract.ZYGOTE_SOCKET}
    request = json.dumps({"argv": list(argv), "env": env, "cwd": os.getcwd()}).encode()
    _send_msg(conn, request, [0, 1, 2])
    raw_pid = _recv_exact(conn, 4)
    if raw_pid is None:
        return 1
    child = _EXIT.unpack(raw_pid)[0]

    def relay(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, relay)
    raw = _recv_exact(conn, 4)
    return 1 if raw is None else int(_EXIT.unpack(raw)[0])


# --- zygote side ----------------------------------------------------------------------------------
def _child(conn: socket.socket, fds: list[int], request: dict[str, object], target: Callable[[list[str]], int]) -> None:
    for i, fd in enumerate(fds[:_FDS]):
        os.dup2(fd, i)
        os.close(fd)
    env, argv, cwd = request["env"], request["argv"], request["cwd"]
    assert isinstance(env, dict) and isinstance(argv, list) and isinstance(cwd, str)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = ["lepton_trainer.train", *argv]
    conn.sendall(_EXIT.pack(os.getpid()))
    global _proxy
    _proxy = conn
    # Keep SIGTERM for the trainer's own sigwait thread (lepton_trainer.stop), not this one.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def orphan_watch() -> None:  # the proxy is gone (SIGKILL): die with it
        with contextlib.suppress(OSError):
            while conn.recv(1):
                pass
        os._exit(128 + signal.SIGKILL)

    threading.Thread(target=orphan_watch, name="proxy-watch", daemon=True).start()
    code = 1
    try:
        code = target(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(_EXIT.pack(code))
        os._exit(code)


def serve(path: str, preload: Callable[[], Callable[[list[str]], int]]) -> None:
    """Listen on ``path``, import via ``preload``, then fork one child per proxy request."""
    _die_with_parent()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener.bind(path)
    listener.listen(16)
    target = preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    while True:
        conn, _ = listener.accept()
        try:
            msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, _FDS)
            (length,) = struct.unpack(">I", msg[:4])
            body = msg[4:]
            while len(body) < length:
                more = conn.recv(length - len(body))
                if not more:
                    break
                body += more
            request = json.loads(body)
        except (OSError, ValueError):
            conn.close()
            continue
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _child(conn, fds, request, target)
        conn.close()
        for fd in fds:
            os.close(fd)


def _die_with_parent() -> None:
    """Linux: SIGKILL the zygote when the launcher (torchrun) exits."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _preload() -> Callable[[list[str]], int]:
    import lepton_trainer.trainer  # noqa: F401  (torch and everything the worker needs)
    from lepton_trainer.train import run

    return run


def start(path: str) -> int:
    """Fork the zygote process (called by the launcher before it execs torchrun)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            serve(path, _preload)
        finally:
            os._exit(0)
    return pid

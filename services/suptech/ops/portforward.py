"""A loopback port whose every connection is relayed to a pod's port through the Kubernetes API.

gRPC dials host:port; a port-forward through the API server is a websocket per connection
(``kubernetes.stream.portforward``), handed to Python as a socket-like object. This module puts
the two together: it listens on 127.0.0.1, and for each connection it accepts it opens a fresh
remote stream and copies bytes both ways, as ``kubectl port-forward`` does. ``open_remote`` is
any callable returning a connected socket-like object, so the relay itself does not care what is
at the other end.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

__all__ = ["Stream", "LocalForward", "describe_failure", "pod_port_opener"]

_CHUNK = 65536


class Stream(Protocol):
    def recv(self, size: int, /) -> bytes: ...
    def sendall(self, data: bytes, /) -> None: ...
    def shutdown(self, how: int, /) -> None: ...
    def close(self) -> None: ...


class LocalForward:
    """127.0.0.1:<free port> relayed to ``open_remote()``; ``error`` keeps the last open failure.

    Use as a context manager: leaving it stops accepting and closes every relayed connection.
    """

    def __init__(self, open_remote: Callable[[], Stream]) -> None:
        self._open_remote = open_remote
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closed = threading.Event()
        self._open: list[socket.socket | Stream] = []
        self._lock = threading.Lock()
        self.error = ""
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, name="ops-forward", daemon=True).start()

    def __enter__(self) -> LocalForward:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for s in self._open:
                _quietly(s.close)
            self._open.clear()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                local, _ = self._listener.accept()
            except OSError:  # the listener was closed
                return
            threading.Thread(target=self._relay, args=(local,), daemon=True).start()

    def _relay(self, local: socket.socket) -> None:
        try:
            remote = self._open_remote()
        except Exception as exc:  # reported with the health result, not raised in a thread
            self.error = describe_failure(exc)
            local.close()
            return
        with self._lock:
            self._open += [local, remote]
        back = threading.Thread(target=self._back, args=(remote, local), daemon=True)
        back.start()
        _pump(local, remote)
        _quietly(lambda: remote.shutdown(socket.SHUT_WR))
        back.join()
        local.close()
        remote.close()

    def _back(self, remote: Stream, local: socket.socket) -> None:
        """Pod to client; when the pod's side ends, note why before the client sees the end."""
        _pump(remote, local)
        # The kubelet reports a refused pod port on the forward's error channel, not as data.
        failure = getattr(remote, "failure", None)
        if callable(failure) and (text := failure()):
            self.error = str(text).strip().splitlines()[0]
        _quietly(lambda: local.shutdown(socket.SHUT_WR))


def describe_failure(exc: BaseException) -> str:
    """One line: a refused websocket handshake is "<status> -+-+- <headers> -+-+- <body>" in the
    client's exception, and the body is the API's Status, whose message says why (RBAC, no pod).
    """
    text = str(getattr(exc, "reason", None) or exc)
    head, _, rest = text.partition(" -+-+- ")
    try:
        message = json.loads(rest.rpartition(" -+-+- ")[2]).get("message")
    except (ValueError, AttributeError):
        message = None
    first = head.strip().splitlines()[0] if head.strip() else type(exc).__name__
    return f"{first}: {message}" if message else f"{type(exc).__name__}: {first}"


def _pump(src: socket.socket | Stream, dst: socket.socket | Stream) -> None:
    """Copy until ``src`` ends (the caller then half-closes ``dst``, so its reader sees the end)."""
    try:
        while data := src.recv(_CHUNK):
            dst.sendall(data)
    except OSError:
        pass


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except OSError:
        pass


def pod_port_opener(core: Any, namespace: str, pod: str, port: int) -> Callable[[], Stream]:
    """A fresh API port-forward to ``pod:port`` per call (``core`` is a ``CoreV1Api``)."""
    from kubernetes.stream import portforward

    def open_remote() -> Stream:
        forward = portforward(
            core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
        )
        return _ApiStream(forward, port)

    return open_remote


class _ApiStream:
    """One port of a ``PortForward``: its socket, plus what its error channel said."""

    def __init__(self, forward: Any, port: int) -> None:
        self._forward = forward
        self._port = port
        self._socket = forward.socket(port)

    def recv(self, size: int, /) -> bytes:
        data: bytes = self._socket.recv(size)
        return data

    def sendall(self, data: bytes, /) -> None:
        self._socket.sendall(data)

    def shutdown(self, how: int, /) -> None:
        self._socket.shutdown(how)

    def close(self) -> None:
        self._socket.close()

    def failure(self) -> str | None:
        error: str | None = self._forward.error(self._port)
        return error

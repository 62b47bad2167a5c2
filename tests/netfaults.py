"""Network faults for tests: a loopback TCP proxy that can stop forwarding, and a server that
accepts TCP and never answers. Both are bounded: they stop by themselves after ``lifetime``."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from types import TracebackType


class BlackholeProxy:
    """Forwards ``127.0.0.1:<port>`` to ``(host, target_port)`` until :meth:`blackhole`; from
    then on nothing more is forwarded either way, but every connection stays open and whatever
    arrives is read and dropped (so the kernel keeps ACKing: a peer that is alive on TCP and
    answers nothing). After ``lifetime`` seconds it closes everything by itself."""

    def __init__(self, host: str, target_port: int, *, lifetime: float = 30.0) -> None:
        self.target = (host, target_port)
        self.lifetime = lifetime
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._blackholed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blackhole-proxy", daemon=True)
        self.accepted = 0
        self.dropped_bytes = 0

    def __enter__(self) -> BlackholeProxy:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def blackhole(self) -> None:
        self._blackholed.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        deadline = time.monotonic() + self.lifetime
        peers: dict[socket.socket, socket.socket] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            try:
                while not self._stop.is_set() and time.monotonic() < deadline:
                    for key, _ in selector.select(timeout=0.05):
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        if sock is self._listener:
                            self._accept(selector, peers)
                        else:
                            self._pump(selector, peers, sock)
            finally:
                for sock in list(peers):
                    sock.close()
                self._listener.close()

    def _accept(self, selector: selectors.BaseSelector,
                peers: dict[socket.socket, socket.socket]) -> None:
        client, _ = self._listener.accept()
        self.accepted += 1
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(True)
            sock.settimeout(5)
            selector.register(sock, selectors.EVENT_READ)
        peers[client], peers[upstream] = upstream, client

    def _pump(self, selector: selectors.BaseSelector,
              peers: dict[socket.socket, socket.socket], sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        other = peers.get(sock)
        if not data or other is None:
            for end in (sock, other):
                if end is not None:
                    peers.pop(end, None)
                    with contextlib.suppress(KeyError, ValueError):
                        selector.unregister(end)
                    end.close()
            return
        if self._blackholed.is_set():
            self.dropped_bytes += len(data)
            return
        with contextlib.suppress(OSError):
            other.sendall(data)


class SilentServer:
    """Listens on 127.0.0.1 and never accepts or answers: the kernel completes the TCP
    handshake (backlog) and ACKs what the client sends, and that is all."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.host, self.port = self._listener.getsockname()[:2]

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._listener.close()

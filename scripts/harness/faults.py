"""Networks staged for tests and benchmarks, all TCP relays on loopback: a proxy that drops
connections or holds a request at a known moment, one that answers a request itself, one that
loses the answer to a request the server did carry out, a balancer that spreads connections
over backends as a Service does, and a proxy that counts the HTTP requests passing through it."""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import threading


def _hang_up(end: socket.socket) -> None:
    """Closes ``end`` so that its peer sees it at once: a bare close() sends nothing while
    the other direction's thread is still blocked reading the same socket."""
    with contextlib.suppress(OSError):  # not connected any more
        end.shutdown(socket.SHUT_RDWR)
    end.close()


class Relay:
    """Listens on loopback and relays each connection to the upstream ``connect`` picks,
    one thread a direction. Subclasses choose the upstream and may look at what passes."""

    def __init__(self, port: int = 0):
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def connect(self) -> socket.socket | None:
        """The upstream of a new connection; None closes the client's at once."""
        raise NotImplementedError

    def passing(self, data: bytes, tail: bytes, connection: dict) -> bool:
        """Sees what a client sends (``tail``: the end of what it sent before; ``connection``:
        a dict of this connection's own); False holds the connection as it is, forever."""
        return True

    def returning(self, data: bytes, connection: dict) -> bool:
        """Sees what the server sends back; False closes the connection instead of passing it."""
        return True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self.connect()
            if upstream is None:
                client.close()
                continue
            connection: dict = {}
            for source, sink, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, outbound, connection), daemon=True
                ).start()

    def _pump(self, source, sink, outbound: bool, connection: dict) -> None:
        tail, held = b"", False
        try:
            while data := source.recv(65536):
                if outbound and not self.passing(data, tail, connection):
                    held = True
                    return  # the client now waits for an answer that never comes
                if not outbound and not self.returning(data, connection):
                    return  # closed: the answer is lost on the way
                tail = (tail + data)[-64:]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            if not held:
                for end in (source, sink):
                    _hang_up(end)

    def close(self) -> None:
        self._listener.close()


class TcpProxy(Relay):
    """A TCP proxy to a local server, to stage failures at a known moment.

    While ``blocked`` it closes every new connection at once (the server looks down). A
    request starting with ``hold``, or whose bytes hold ``hold_containing``, is held until
    ``release()`` (each such request, forever without it), so a test can act while it is in
    flight.
    """

    def __init__(
        self,
        target_port: int,
        hold: bytes | None = None,
        blocked: bool = False,
        hold_containing: bytes | None = None,
    ):
        self.target_port = target_port
        self.hold, self.hold_containing = hold, hold_containing
        self.blocked = blocked
        self.held = threading.Event()
        self._released = threading.Event()
        super().__init__()

    def connect(self) -> socket.socket | None:
        if self.blocked:
            return None
        return socket.create_connection(("127.0.0.1", self.target_port))

    def passing(self, data: bytes, tail: bytes, connection: dict) -> bool:
        held = bool(self.hold and data.startswith(self.hold))
        held |= bool(self.hold_containing and self.hold_containing in tail + data)
        if held:
            self.held.set()
            self._released.wait()
        return True

    def release(self) -> None:
        """The held request goes on to the server, and what follows it passes."""
        self._released.set()


class AnsweringProxy(Relay):
    """A proxy that answers each request starting with ``request`` itself, with ``status``
    and a JSON error, and passes every other one to the server: a server that refuses one
    call (403) or fails it (500)."""

    def __init__(self, target_port: int, request: bytes, status: int):
        self.target_port, self.request, self.status = target_port, request, status
        self.answered = 0
        super().__init__()

    def connect(self) -> socket.socket | None:
        return socket.create_connection(("127.0.0.1", self.target_port))

    def _pump(self, source, sink, outbound: bool, connection: dict) -> None:
        if not outbound:
            return super()._pump(source, sink, outbound, connection)
        try:
            while data := source.recv(65536):
                if data.startswith(self.request):
                    self.answered += 1
                    body = f"staged: {self.status}".encode()
                    source.sendall(
                        f"HTTP/1.1 {self.status} Staged\r\nContent-Type: text/plain\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                        + body
                    )
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                _hang_up(end)


class AnswerLosingProxy(Relay):
    """A proxy that lets each request starting with ``request`` reach the server and carries
    it out there, then closes the client's connection before the answer gets back, the first
    ``times`` times: as when a server's replica goes away mid-call."""

    def __init__(self, target_port: int, request: bytes, times: int = 1):
        self.target_port, self.request, self.left = target_port, request, times
        self.lost = 0
        self._lock = threading.Lock()
        super().__init__()

    def connect(self) -> socket.socket | None:
        return socket.create_connection(("127.0.0.1", self.target_port))

    def passing(self, data: bytes, tail: bytes, connection: dict) -> bool:
        if data.startswith(self.request):
            with self._lock:
                if self.left > 0:
                    self.left -= 1
                    connection["lose"] = True
        return True

    def returning(self, data: bytes, connection: dict) -> bool:
        if connection.get("lose"):
            with self._lock:
                self.lost += 1
            return False
        return True


class TcpBalancer(Relay):
    """A Service's virtual address, as kube-proxy gives it: each new connection goes to the
    next backend port in turn, skipping one that refuses; a connection stays where it went.
    Backends can be added and removed while it runs, as endpoints come and go."""

    def __init__(self, *backends: int, port: int = 0):
        self.backends = list(backends)
        self._turn = itertools.count()
        self._lock = threading.Lock()
        super().__init__(port)

    def connect(self) -> socket.socket | None:
        with self._lock:
            backends = list(self.backends)
            start = next(self._turn)
        for k in range(len(backends)):
            try:
                return socket.create_connection(
                    ("127.0.0.1", backends[(start + k) % len(backends)])
                )
            except OSError:
                continue  # this endpoint is gone: the next one
        return None


class CountingProxy(Relay):
    """A proxy in front of an HTTP server that counts the requests passing through it."""

    _REQUEST = re.compile(rb"(?:^|\r\n)(?:GET|POST|PUT|PATCH|DELETE) /\S* HTTP/1\.[01]\r\n")

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.requests = 0
        self._lock = threading.Lock()
        super().__init__()

    def connect(self) -> socket.socket | None:
        return socket.create_connection(("127.0.0.1", self.target_port))

    def passing(self, data: bytes, tail: bytes, connection: dict) -> bool:
        # A request line may straddle two reads: count the ones the new data completes.
        found = len(self._REQUEST.findall(tail + data)) - len(self._REQUEST.findall(tail))
        with self._lock:
            self.requests += found
        return True

"""Networks staged for tests: a TCP proxy that drops or holds connections at a known moment,
and a balancer that spreads connections over backends as a Service does."""

from __future__ import annotations

import socket


class TcpProxy:
    """A TCP proxy to a local server, to stage failures at a known moment.

    While ``blocked`` it closes every new connection at once (the server looks down);
    a request starting with ``hold`` is held forever, so a test can kill the client
    while that request is in flight.
    """

    def __init__(self, target_port: int, hold: bytes | None = None, blocked: bool = False):
        import threading

        self.target_port = target_port
        self.hold = hold
        self.blocked = blocked
        self.held = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.blocked:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, inspect: bool) -> None:
        try:
            while data := source.recv(65536):
                if inspect and self.hold and data.startswith(self.hold):
                    self.held.set()
                    return  # the client now waits for an answer that never comes
                sink.sendall(data)
        except OSError:
            pass
        finally:
            if not self.held.is_set():
                for end in (source, sink):
                    end.close()

    def close(self) -> None:
        self._listener.close()


class TcpBalancer:
    """A Service's virtual address, as kube-proxy gives it: each new connection goes to the
    next backend port in turn, skipping one that refuses; a connection stays where it went.
    Backends can be added and removed while it runs, as endpoints come and go."""

    def __init__(self, *backends: int, port: int = 0):
        import itertools
        import threading

        self.backends = list(backends)
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _upstream(self) -> socket.socket | None:
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

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._upstream()
            if upstream is None:
                client.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self._listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            end.close()

"""Failures staged at a known moment: a TCP proxy that drops or holds connections."""

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

"""The node's API server on the host's loopback: a TCP relay from 127.0.0.1:PORT to an address
inside the node's network namespace, which has no route out and no way in but this.

    python3 relay.py PORT NETNS_FILE TARGET_HOST:TARGET_PORT

The listening socket is opened in the host's namespace; then the process enters the node's,
so every connection it makes from then on is made there (a socket belongs to the namespace
it was created in). Stdlib only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000


def enter(netns_file: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(netns_file, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns_file}")
    finally:
        os.close(fd)


def pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass  # a reset or a closed peer ends the copy like an end of stream
    finally:
        for sock in (source, sink):  # one side ended: end both, so neither waits forever
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def serve(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
    back.start()
    pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main() -> None:
    port, netns_file, target = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    host, target_port = target.rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", port), backlog=128)
    enter(netns_file)
    while True:
        client, _ = listener.accept()
        args = (client, (host, int(target_port)))
        threading.Thread(target=serve, args=args, daemon=True).start()


if __name__ == "__main__":
    main()

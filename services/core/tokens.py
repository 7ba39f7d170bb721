"""Bearer tokens, as every service reads them: a file a Secret mounts, one token a line (blank
lines and lines starting with # ignored), so that a new token can be added before the old one
goes; re-read when the file changes, so a rotation needs no restart; compared in constant
time against every accepted token; never logged."""

from __future__ import annotations

import hmac
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

BEARER = "bearer "


def parse(text: str) -> list[str]:
    """The tokens of a token file's text, in order."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def from_header(header: str | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header; None when it holds none."""
    if header is None or header[: len(BEARER)].lower() != BEARER:
        return None
    return header[len(BEARER) :].strip() or None


class TokenFile:
    """The tokens a file holds: the first is what a client sends, all of them what a server
    accepts. A file that cannot be read mid-rotation leaves the tokens read before."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._tokens: list[bytes] = []
        self._load()
        if not self._tokens:
            raise ValueError(f"token file {path} holds no token")

    def _load(self) -> None:
        info = os.stat(self.path)  # what changes when a Secret's update replaces the file
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stamp == self._stamp:
            return
        tokens = [t.encode() for t in parse(self.path.read_text())]
        with self._lock:
            self._tokens, self._stamp = tokens, stamp
        log.info("%d bearer tokens in %s", len(tokens), self.path)

    def tokens(self) -> list[bytes]:
        try:
            self._load()
        except OSError:
            log.warning(
                "token file %s could not be read; keeping the tokens read before", self.path
            )
        return self._tokens

    def first(self) -> str:
        return self.tokens()[0].decode()

    def accepts(self, token: str | None) -> bool:
        """Whether ``token`` is one of the file's, compared with every one of them and no
        early exit: the time taken says nothing of which matched."""
        if not token:
            return False
        given = token.encode()
        return any([hmac.compare_digest(given, accepted) for accepted in self.tokens()])

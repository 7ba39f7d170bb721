"""A stand-in for the few Kubernetes API calls the retraining receiver makes, recording them.

No API server can run here (its images cannot be pulled), so the receiver's Kubernetes client
is pointed at this HTTP server instead, through an ordinary kubeconfig: it serves the
ConfigMaps of a ``helm template`` rendering, lists and creates Jobs as the API does (a
generated name, a creation time, an active status), and keeps every request for the test
to assert on. The e2e tier runs the receiver against a real cluster where one can start.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import urllib.parse
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

_CONFIG_MAP = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/configmaps/(?P<name>[^/]+)$")
_JOBS = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selected(labels: dict, selector: str) -> bool:
    """Equality-based label selectors (``a=b,c=d``), which is all the receiver sends."""
    terms = [term.split("=", 1) for term in selector.split(",") if term]
    return all(labels.get(key) == value for key, value in terms)


class KubeApiStandIn:
    def __init__(self, objects: list[dict]):
        self.config_maps = {
            (o["metadata"]["namespace"], o["metadata"]["name"]): o
            for o in objects
            if o["kind"] == "ConfigMap"
        }
        self.jobs: list[dict] = []
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> KubeApiStandIn:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
                    "users": [{"name": "receiver", "user": {"token": "stand-in"}}],
                    "contexts": [
                        {"name": "stand-in", "context": {"cluster": "stand-in", "user": "receiver"}}
                    ],
                    "current-context": "stand-in",
                }
            )
        )
        return path

    def created(self) -> list[dict]:
        """The Jobs created through the API, in order."""
        return [job for job in self.jobs if job["metadata"].get("uid")]

    def finish(self, name: str) -> None:
        """Mark a Job complete, as its controller would once its pod succeeded."""
        (job,) = [j for j in self.jobs if j["metadata"]["name"] == name]
        job["status"] = {
            "succeeded": 1,
            "completionTime": _now(),
            "conditions": [{"type": "Complete", "status": "True"}],
        }

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                api.requests.append(("GET", self.path))
                if match := _CONFIG_MAP.match(url.path):
                    found = api.config_maps.get((match["ns"], match["name"]))
                    if found is None:
                        return self._status(
                            HTTPStatus.NOT_FOUND, f"configmaps {match['name']!r} not found"
                        )
                    return self._answer(HTTPStatus.OK, found)
                if match := _JOBS.match(url.path):
                    selector = urllib.parse.parse_qs(url.query).get("labelSelector", [""])[0]
                    with api._lock:
                        items = [
                            job
                            for job in api.jobs
                            if job["metadata"]["namespace"] == match["ns"]
                            and _selected(job["metadata"].get("labels", {}), selector)
                        ]
                    return self._answer(
                        HTTPStatus.OK,
                        {
                            "apiVersion": "batch/v1",
                            "kind": "JobList",
                            "metadata": {},
                            "items": items,
                        },
                    )
                return self._status(HTTPStatus.NOT_FOUND, f"the stand-in does not serve {url.path}")

            def do_POST(self):
                url = urllib.parse.urlsplit(self.path)
                api.requests.append(("POST", self.path))
                match = _JOBS.match(url.path)
                if match is None:
                    return self._status(
                        HTTPStatus.NOT_FOUND, f"the stand-in does not serve {url.path}"
                    )
                job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                metadata = job["metadata"]
                metadata.setdefault(
                    "name", metadata.get("generateName", "job-") + secrets.token_hex(3)
                )
                metadata.update(
                    namespace=match["ns"], uid=secrets.token_hex(8), creationTimestamp=_now()
                )
                job["status"] = {"active": 1, "startTime": _now()}
                with api._lock:
                    api.jobs.append(job)
                return self._answer(HTTPStatus.CREATED, job)

            def _answer(self, status: HTTPStatus, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, status: HTTPStatus, message: str) -> None:
                self._answer(
                    status,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "message": message,
                        "code": status,
                    },
                )

            def log_message(self, format, *args):
                pass

        return Handler

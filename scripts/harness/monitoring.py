"""Debian's Prometheus and Alertmanager as real servers on free loopback ports."""

from __future__ import annotations

import shutil
from pathlib import Path

from scripts.harness.processes import LoggedProcess, free_port, http_ok


class ToolMissing(RuntimeError):
    """A program a server needs is not installed; the message says how to install it."""


def installed(package: str, *names: str) -> str:
    """The first of ``names`` on PATH; ToolMissing names the Debian package otherwise."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise ToolMissing(f"no {names[0]}: apt-get install -y --no-install-recommends {package}")


class PrometheusServer(LoggedProcess):
    """A real Prometheus scraping the given targets every second."""

    def __init__(
        self,
        root: Path,
        targets: list[str],
        rule_files: list[Path] = (),
        labels: dict[str, str] | None = None,
        alertmanagers: list[str] = (),
    ):
        """``labels`` join every scraped series, as the operator adds namespace and the like;
        the job is named after the predictor's Service, as a ServiceMonitor names it."""
        import yaml

        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = root / "prometheus.yml"
        settings = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {
                    "job_name": "petr4-predictor",
                    "static_configs": [{"targets": targets, "labels": labels or {}}],
                }
            ],
        }
        if alertmanagers:
            settings["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": alertmanagers}]}]
            }
        config.write_text(yaml.safe_dump(settings))
        self.args = [
            installed("prometheus", "prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def start(self) -> PrometheusServer:
        self._launch(self.args, None, self.root / "prometheus.log")
        self._wait_ready(lambda: http_ok(f"{self.url}/-/ready"), 30, "Prometheus to be ready")
        return self

    def query(self, expr: str) -> list[dict]:
        import json
        import urllib.parse

        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]


class AlertmanagerServer(LoggedProcess):
    """Debian's Alertmanager with a given configuration, alone (no cluster peers)."""

    def __init__(self, root: Path, config: dict):
        import yaml

        binary = installed("prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (root / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.args = [
            binary,
            f"--config.file={root / 'alertmanager.yml'}",
            f"--storage.path={root / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def start(self) -> AlertmanagerServer:
        self._launch(self.args, None, self.root / "alertmanager.log")
        self._wait_ready(lambda: http_ok(f"{self.url}/-/ready"), 30, "Alertmanager to be ready")
        return self

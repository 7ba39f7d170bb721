"""A release's names and its chart, from the one place its version lives: the chart's Chart.yaml.

    python scripts/release.py names TAG OWNER      the version and every image reference
    python scripts/release.py chart OWNER FOLDER   the chart, packaged to pull those images

``names`` checks that TAG is ``v`` + the chart's version, and that the chart's version and
appVersion are one number (the images are tagged with appVersion, which the chart pulls by
default), then prints ``version=…``, ``chart=…`` and ``<name>=<image>`` lines, as GitHub's
step outputs take them. ``chart`` packages a copy of the chart whose image repositories are
the release's, so that ``helm install`` of the package pulls exactly what ``names`` named.
Both name the forge's registry, ghcr.io, under OWNER in lower case (a registry's rule).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "petr4"
REGISTRY = "ghcr.io"
# Each image by name, and the line of values.yaml that names its repository.
IMAGES = {
    "trainer": "repository: petr4-trainer",
    "predictor": "repository: petr4-predictor",
    "mlflow": "repository: petr4-mlflow",
}


class ReleaseError(ValueError):
    pass


def chart_field(key: str) -> str:
    """A top-level string of Chart.yaml (read without PyYAML: this runs on a bare runner)."""
    found = re.search(rf'^{key}:\s*"?([^"\s]+)"?\s*$', (CHART / "Chart.yaml").read_text(), re.M)
    if not found:
        raise ReleaseError(f"{CHART / 'Chart.yaml'} has no {key}")
    return found.group(1)


def chart_version() -> str:
    """The chart's version, which must be its appVersion too."""
    version, app_version = chart_field("version"), chart_field("appVersion")
    if version != app_version:
        raise ReleaseError(
            f"Chart.yaml's version {version} and appVersion {app_version} differ: "
            "a release tags its images with the chart's version, so make them one"
        )
    return version


def repository(owner: str, name: str) -> str:
    return f"{REGISTRY}/{owner.lower()}/petr4-{name}"


def names(tag: str, owner: str) -> dict[str, str]:
    version = chart_version()
    if tag != f"v{version}":
        raise ReleaseError(f"tag {tag} is not v{version}, the version in {CHART / 'Chart.yaml'}")
    found = {"version": version, "chart": f"oci://{REGISTRY}/{owner.lower()}/charts"}
    return found | {name: f"{repository(owner, name)}:{version}" for name in IMAGES}


def package(owner: str, folder: Path) -> Path:
    """The chart as released: values that name the release's images; the package's path."""
    helm = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "kube_tools.py"), "helm"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        copy = Path(work) / "petr4"
        shutil.copytree(CHART, copy)
        values = (copy / "values.yaml").read_text()
        for name, line in IMAGES.items():
            pattern = rf"^(\s*){re.escape(line)}$"
            values, count = re.subn(
                pattern, rf"\g<1>repository: {repository(owner, name)}", values, flags=re.M
            )
            if count != 1:
                raise ReleaseError(f"values.yaml names the {name} image {count} times, not once")
        (copy / "values.yaml").write_text(values)
        subprocess.run(
            [helm, "package", str(copy), "--destination", str(folder)],
            capture_output=True,
            text=True,
            check=True,
        )
    return folder / f"petr4-{chart_version()}.tgz"


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["names"] and len(argv) == 3:
            for key, value in names(argv[1], argv[2]).items():
                print(f"{key}={value}")
        elif argv[:1] == ["chart"] and len(argv) == 3:
            print(package(argv[1], Path(argv[2])))
        else:
            raise SystemExit(__doc__)
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

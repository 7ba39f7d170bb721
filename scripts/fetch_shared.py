"""The schemas that live beside the project, fetched where that folder is absent (a fork's CI).

    python scripts/fetch_shared.py ../shared

Each file comes from its pinned upstream release and must match the checksum of the copy the
project is tested with; one that does not is left out, so that the tests needing it skip,
saying why, rather than check against a schema nobody has read. The real prices are not
fetched: they are a gathered copy, not one download, so the tests and benchmarks that read
them skip where they are absent.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from pathlib import Path

# kube-prometheus-stack's chart ships the operator's CRDs under these names.
STACK = (
    "https://raw.githubusercontent.com/prometheus-community/helm-charts/"
    "kube-prometheus-stack-88.5.3/charts/kube-prometheus-stack/charts/crds/crds"
)
SKAFFOLD = "https://raw.githubusercontent.com/GoogleContainerTools/skaffold/main/docs-v2/content/en/schemas"
SCHEMAS = {
    "crd-servicemonitors.yaml": (
        f"{STACK}/crd-servicemonitors.yaml",
        "3322d612f23bf144c887c94bf247b0b4a69189adf37c0d482d2c6267ffe906ab",
    ),
    "crd-prometheusrules.yaml": (
        f"{STACK}/crd-prometheusrules.yaml",
        "72b1e5f9959e67990d1598eb31b24ca4415007e31df3916356ef216316b2bf40",
    ),
    "crd-podmonitors.yaml": (
        f"{STACK}/crd-podmonitors.yaml",
        "41de2587baafa31240438654a3ae5dc19ef40296c31cb186855fa4ce85b03fb9",
    ),
    "crd-alertmanagerconfigs.yaml": (
        f"{STACK}/crd-alertmanagerconfigs.yaml",
        "8b99c40209fe22cf825ac86aca786d4864f627fde51b1eb5316bda78cd4080d0",
    ),
    "skaffold-v4beta13.json": (
        f"{SKAFFOLD}/v4beta13.json",
        "e9d267ee69db6d4727b403ec53363a5e66871ac7b0bc92aea3ac39b0736dfbca",
    ),
}


def fetch(folder: Path) -> list[str]:
    """Downloads each schema into folder/schemas; returns what was left out, and why."""
    schemas = folder / "schemas"
    schemas.mkdir(parents=True, exist_ok=True)
    left_out = []
    for name, (url, sha256) in SCHEMAS.items():
        with urllib.request.urlopen(url, timeout=60) as response:
            body = response.read()
        digest = hashlib.sha256(body).hexdigest()
        if digest != sha256:
            left_out.append(f"{name}: {url} has sha256 {digest}, not {sha256}")
            continue
        (schemas / name).write_bytes(body)
    return left_out


def main() -> int:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    folder = Path(sys.argv[1])
    if (folder / "schemas").is_dir():
        print(f"{folder / 'schemas'} is there already")
        return 0
    for reason in fetch(folder):
        print(f"left out (its tests will skip): {reason}")
    print(f"schemas in {folder / 'schemas'}; no prices (their tests skip)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

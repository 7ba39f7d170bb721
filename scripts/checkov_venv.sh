#!/usr/bin/env bash
# checkov in a virtual environment of its own: installed beside the project it would
# downgrade packages that torch and MLflow need. Prints the path of its checkov.
#   scripts/checkov_venv.sh            installs it first when it is not there (needs PyPI)
#   scripts/checkov_venv.sh --find     only says where it is; exit 1 when it is not installed
set -euo pipefail
venv="$(cd "$(dirname "$0")/.." && pwd)/.cache/tools/checkov-venv"
if [ "${1:-}" = "--find" ]; then
    [ -x "$venv/bin/checkov" ] || exit 1
elif [ ! -x "$venv/bin/checkov" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet 'checkov>=3.2,<4'
fi
echo "$venv/bin/checkov"

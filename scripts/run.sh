#!/usr/bin/env bash
# Install dhr-label into .venv and open the review GUI on the bundled demo project.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt -e .
exec .venv/bin/python app.py "$@"

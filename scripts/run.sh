#!/usr/bin/env bash
# Install dhr-label into .venv and open the review GUI on the bundled demo project.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python app.py "$@"

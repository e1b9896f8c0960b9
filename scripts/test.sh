#!/usr/bin/env bash
# Install everything the tests need into .venv and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh requirements-dev.txt
# Browser tests drive Debian's Chromium through Playwright (Playwright's own browser download is not used).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium not found: browser tests will be skipped (install Debian's 'chromium' to run them)" >&2
    fi
fi
.venv/bin/lint-imports  # the layers import one way (contracts in pyproject.toml)
.venv/bin/ruff check --quiet .  # lint rules in pyproject.toml
exec .venv/bin/python -m pytest "$@"

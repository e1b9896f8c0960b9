#!/usr/bin/env bash
# Create .venv and install dhr-label with the packages of a requirements file (default: requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# sam2 ships as a source package whose build would pull a second torch into an isolated build environment: build it
# against the pinned torch, without its optional CUDA extension (its Python fallback is used).
.venv/bin/pip install -q setuptools wheel "$(grep '^torch==' requirements.txt)" "$(grep '^torchvision==' requirements.txt)"
SAM2_BUILD_CUDA=0 .venv/bin/pip install -q --no-build-isolation --no-deps "$(grep '^sam2==' requirements.txt)"
.venv/bin/pip install -q -r "${1:-requirements.txt}" -e .
.venv/bin/python scripts/remove_shadowing_packages.py  # sam2's wheel also ships a top-level "training" package

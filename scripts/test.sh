#!/usr/bin/env bash
# One command, fresh machine: install with the dev extras, then lint, type-check and test.
# Extra arguments go to pytest (e.g. scripts/test.sh -k hitl -x).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh "dev"
# The real peers of the agent tests (dockerd, llama.cpp, whisper, mosquitto, tesseract ...).
bash scripts/peers.sh

echo "== ruff (lint, format)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== import contracts"
.venv/bin/lint-imports
echo "== pytest"
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# One command, fresh machine: install, then start Postgres, Temporal (UI on :8233) and the worker.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh ""
exec .venv/bin/meta-agent dev "$@"

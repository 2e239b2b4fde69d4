#!/usr/bin/env bash
# Fault injection: a mixed workload on a throwaway stack while Postgres stops, Temporal restarts
# and workers are killed, then the run invariant checked on every run (exit 1 on any problem).
# Arguments go to `python -m chaos` (e.g. scripts/chaos.sh --minutes 10 --seed 7).
set -euo pipefail
cd "$(dirname "$0")/.."
# The project's virtualenv if there is one; PYTHON=... picks another interpreter.
python=${PYTHON:-python3}
if [[ -z ${PYTHON:-} && -x .venv/bin/python ]]; then
    python=.venv/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m chaos "$@"

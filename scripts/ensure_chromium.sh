#!/bin/sh
# Make sure Debian's Chromium is at /usr/bin/chromium for the dashboard's browser tests.
#
# The tests drive the system Chromium instead of Playwright's downloaded browsers, so a
# fresh machine needs only apt (see tests/dashboard/conftest.py, which runs this once per
# session). Exit status: 0 when /usr/bin/chromium exists afterwards, 1 otherwise.
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: apt-get not found; install Chromium by hand at $CHROMIUM" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure_chromium: not root and no passwordless sudo; run:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium

[ -x "$CHROMIUM" ]

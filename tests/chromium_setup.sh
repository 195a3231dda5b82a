#!/usr/bin/env bash
# Make a Chromium browser available for the report's browser test.
# Installs Debian's chromium package when no chromium is on PATH. Without root or apt-get it
# only warns, unless CI=true, where it fails so that the browser test cannot be skipped silently.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi

fail() {
    echo "chromium_setup: $1" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
    echo "chromium_setup: the browser test will be skipped." >&2
    exit 0
}

command -v apt-get >/dev/null 2>&1 || fail "chromium is missing and apt-get is not available; install Chromium and put chromium on PATH."
SUDO=""
if [ "$(id -u)" != "0" ]; then
    command -v sudo >/dev/null 2>&1 || fail "chromium is missing; installing it needs root: apt-get install chromium."
    SUDO="sudo -n"
fi
echo "chromium_setup: installing chromium from Debian packages" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core \
    || fail "apt-get install chromium failed."
command -v chromium >/dev/null 2>&1 || fail "apt-get installed chromium, but no chromium command is on PATH."

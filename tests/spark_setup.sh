#!/usr/bin/env bash
# Make Java 17 or later available for the Spark tests (pyspark 4 needs it).
# Installs Debian's openjdk-17-jre-headless, or default-jre-headless where 17 is not packaged,
# when no suitable java is on PATH. Without root or apt-get it only warns, unless CI=true,
# where it fails so that the Spark tests cannot be skipped silently.
set -euo pipefail

java_major() {
    java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

if command -v java >/dev/null 2>&1 && [ "$(java_major)" -ge 17 ]; then
    exit 0
fi

fail() {
    echo "spark_setup: $1" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
    echo "spark_setup: the Spark tests will be skipped." >&2
    exit 0
}

command -v apt-get >/dev/null 2>&1 || fail "Java 17+ is missing and apt-get is not available; install a JRE 17+ and put java on PATH."
SUDO=""
if [ "$(id -u)" != "0" ]; then
    command -v sudo >/dev/null 2>&1 || fail "Java 17+ is missing; installing it needs root: apt-get install openjdk-17-jre-headless."
    SUDO="sudo -n"
fi
echo "spark_setup: installing Java 17+ from Debian packages" >&2
$SUDO apt-get update -qq
if apt-cache show openjdk-17-jre-headless >/dev/null 2>&1; then
    PACKAGE=openjdk-17-jre-headless
else
    PACKAGE=default-jre-headless
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$PACKAGE" \
    || fail "apt-get install $PACKAGE failed."
[ "$(java_major)" -ge 17 ] || fail "$PACKAGE installed a Java older than 17."

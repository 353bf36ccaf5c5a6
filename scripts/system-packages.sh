#!/usr/bin/env bash
# The Debian packages CloudGrpc needs, in one place (Makefile, scripts/demo.sh and .ci/run
# call this script instead of repeating the list).
#
#   scripts/system-packages.sh install   # what `make install` needs: the virtualenv, pyfuse3's build
#   scripts/system-packages.sh demo      # + fuse3 (fusermount3) for the demo's mount
#   scripts/system-packages.sh test      # + the PostgreSQL server, iproute2, openssl for `make test`
#   scripts/system-packages.sh list GROUP  # print the group's packages, one line
#
# Only the missing packages are touched. As root they are installed with apt-get
# (non-interactive, never reads stdin, so CI can run it from a fresh clone). As any other user
# nothing is installed: one line on stderr names the missing packages and the script exits 1
# (so `make demo` / `make test` stop there, before pip fails on pyfuse3's build).
# CLOUDGRPC_SYSTEM_PACKAGES="pkg ..." replaces the group's list (a trimmed image; the tests).
set -euo pipefail

# make install: python3 -m venv, and pip building pyfuse3 (a C extension against libfuse3).
INSTALL_PACKAGES="make python3-venv gcc python3-dev pkg-config libfuse3-dev"
# make demo: the mount needs fusermount3.
DEMO_PACKAGES="$INSTALL_PACKAGES fuse3"
# make test: a throwaway PostgreSQL server (scripts/postgres-throwaway.sh), `ss`/`ip` and openssl
# (test certificates), Prometheus (the metrics scrape test), systemd's tools (systemd-analyze
# verifies the deploy/ units), HAProxy (two gateways behind deploy/haproxy/haproxy.cfg), rsync
# (`rsync -aH` of hard links into the mount), besides everything the demo's mount tests use.
TEST_PACKAGES="$DEMO_PACKAGES postgresql iproute2 openssl prometheus systemd haproxy rsync"

usage() { echo "usage: $0 install|demo|test | list install|demo|test" >&2; exit 2; }

packages_of() {
  if [ -n "${CLOUDGRPC_SYSTEM_PACKAGES:-}" ]; then echo "$CLOUDGRPC_SYSTEM_PACKAGES"; return; fi
  case "$1" in
    install) echo "$INSTALL_PACKAGES" ;;
    demo) echo "$DEMO_PACKAGES" ;;
    test) echo "$TEST_PACKAGES" ;;
    *) usage ;;
  esac
}

installed() {  # a package counts only when dpkg says "install ok installed" (not config-files)
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

if [ "${1:-}" = list ]; then
  packages_of "${2:-}"
  exit 0
fi
group=${1:-}
[ -n "$group" ] || usage
wanted=$(packages_of "$group")

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "system-packages: not a Debian system; make sure the equivalents of these are installed: $wanted" >&2
  exit 0
fi

missing=""
for pkg in $wanted; do
  installed "$pkg" || missing="$missing $pkg"
done
missing=${missing# }
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: $missing (as root: apt-get install $missing)" >&2
  exit 1
fi

echo "installing Debian packages: $missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null
# shellcheck disable=SC2086 # one word per package
apt-get install -y -qq $missing </dev/null >/dev/null

#!/usr/bin/env bash
# Installs the Debian packages sagaflow builds and tests with, if any is missing.
# Usage: scripts/install-deps.sh [build|test]   (test adds what the test suite needs)
set -euo pipefail

packages=(cmake ninja-build g++ pkg-config python3
          nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
          libgoogle-perftools-dev
          libsoci-dev libboost-dev libpq-dev libsqlite3-dev)
if [ "${1:-build}" = "test" ]; then
  packages+=(libgtest-dev libgmock-dev libbenchmark-dev)
  # scripts/postgres.sh: the server, initdb and pgbench (postgresql-15), psql (client);
  # the bench's SQLite baseline: libsqlite3-dev.
  packages+=(postgresql-15 postgresql-client-15 libsqlite3-dev)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  apt_get=(apt-get)
elif command -v sudo >/dev/null; then
  apt_get=(sudo apt-get)
else
  echo "error: these packages are missing and I am not root: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${apt_get[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null || {
  "${apt_get[@]}" update >/dev/null
  "${apt_get[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
}

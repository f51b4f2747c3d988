#!/usr/bin/env bash
# Installs, with apt-get, every Debian 12 package antenna needs to build, test and run.
# Idempotent: when everything is present it installs nothing and returns at once.
set -euo pipefail

PKGS=(
  build-essential gcc clang llvm meson ninja-build pkg-config git
  libssl-dev libcurl4-openssl-dev liburing-dev libsodium-dev libsqlite3-dev
  libmicrohttpd-dev libgnutls28-dev libjansson-dev libcmocka-dev
  curl sqlite3 openssl ca-certificates
  libclang-rt-14-dev
  # the integration tests' HTTP checks, and the independent Crypt4GH reader that checks the
  # files antenna writes (the reference crypt4gh tool is not packaged for Debian)
  python3 python3-cryptography
)
# Optional tools for benchmarks and checks; their absence skips, never fails, a test.
OPT_PKGS=(fio rsync wrk nginx-light systemd procps xxd)

missing=()
for p in "${PKGS[@]}" ${ANTENNA_WITH_BENCH:+"${OPT_PKGS[@]}"}; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "deps.sh: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >&2
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2

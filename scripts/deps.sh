#!/usr/bin/env bash
# deps.sh — install the Debian packages vigil needs to build, test and demo,
# and the npm packages of the interoperability tests (MQTT.js, from
# package-lock.json into ./node_modules). As root it installs what is missing
# with apt-get; otherwise it prints the exact command to run and fails.
set -euo pipefail
pkgs=(gcc make clang libclang-rt-14-dev libssl-dev mosquitto mosquitto-clients python3 python3-paho-mqtt python3-pytest
      procps iproute2 libsqlite3-dev libcurl4-openssl-dev libargon2-dev openssl curl)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from Debian (nodejs + npm) or elsewhere (NodeSource ships
# npm inside its nodejs package): check the commands, not the packages.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
npm_deps() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if [ ! -f "$root/node_modules/mqtt/package.json" ]; then
        echo "deps: npm ci (test tooling: MQTT.js)"
        (cd "$root" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
}
if [ ${#missing[@]} -eq 0 ]; then
    npm_deps
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "vigil needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
npm_deps

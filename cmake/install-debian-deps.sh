#!/bin/sh
# Installs the Debian packages lsattn builds with, only those that are missing.
set -e
# clang-14 with libclang-rt-14-dev (ASan, UBSan, libFuzzer) and libomp-14-dev (its OpenMP):
# the sanitize and fuzz presets.
packages="g++ make cmake libeigen3-dev nlohmann-json3-dev libcli11-dev catch2 libbenchmark-dev libstb-dev
          clang-14 libclang-rt-14-dev libomp-14-dev"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing:$missing"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing

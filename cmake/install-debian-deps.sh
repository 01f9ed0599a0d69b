#!/bin/sh
# Installs the Debian packages lsattn builds with, only those that are missing.
set -e
packages="g++ make cmake libeigen3-dev nlohmann-json3-dev libcli11-dev catch2 libbenchmark-dev libstb-dev"
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

#!/bin/sh
# Installs every package derf needs on a Debian machine (run as root). Does nothing when all are there.
set -eu
PKGS="build-essential pkg-config libopenblas-dev libopenblas0-openmp libcmocka-dev libcjson-dev \
zlib1g-dev libpcre2-dev libstb-dev python3-torch python3-numpy dataset-fashion-mnist"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "deps: all packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages:$missing; run 'make deps' as root (or: sudo apt-get install$missing)" >&2
  exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: done"

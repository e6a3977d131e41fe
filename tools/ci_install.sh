#!/bin/sh
# CI: installs libderf into a temporary prefix (make install), builds examples/ against that installed copy
# only (pkg-config, no repository headers), shared and static, and runs them: the Derf layer example checks
# its backward against finite differences; the classify example reads a ViT trained for a few steps and a
# Fashion-MNIST test image (PGM).
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -j2 install PREFIX="$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
readelf -d "$tmp/prefix/lib/libderf.so" | grep -q 'SONAME.*libderf.so.0' || { echo "ci_install: libderf.so has no soname libderf.so.0" >&2; exit 1; }
for ex in derf_layer classify; do
  cc -std=c11 -O2 "examples/$ex.c" -o "$tmp/$ex" $(pkg-config --cflags --libs derf) -lm -Wl,-rpath,"$tmp/prefix/lib"
done
# static: libderf.a and its private dependencies (Libs.private)
cc -std=c11 -O2 examples/derf_layer.c -o "$tmp/derf_layer_static" $(pkg-config --cflags derf) \
   $(pkg-config --static --libs derf | sed 's/ -lderf / -Wl,-Bstatic -lderf -Wl,-Bdynamic /') -lm
ldd "$tmp/derf_layer" | grep -q "$tmp/prefix/lib/libderf.so.0" || { echo "ci_install: the example does not use the installed libderf.so" >&2; exit 1; }
"$tmp/derf_layer"
! ldd "$tmp/derf_layer_static" | grep -q libderf || { echo "ci_install: the static example links libderf.so" >&2; exit 1; }
"$tmp/derf_layer_static" >/dev/null
./derf train --preset tiny --epochs 1 --train-limit 1024 --test-limit 500 --no-eval-train --threads 2 --out "$tmp/run" >/dev/null
# the first Fashion-MNIST test image as a binary PGM (stb_image reads it; PNG decoding is tested in test_infer)
{ printf 'P5\n28 28\n255\n'; gzip -dc /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz | tail -c +17 | head -c 784; } > "$tmp/img.pgm"
"$tmp/classify" "$tmp/run/model.safetensors" "$tmp/img.pgm"
echo "ci_install: examples built against the installed libderf (shared and static) and ran"

#!/bin/sh
# gpu_bundle.sh: prepares .gpubundle/ (git-ignored) for a GPU machine whose image has nvcc, gcc, make
# and PyTorch but not derf's CPU libraries (OpenBLAS, cJSON, PCRE2, zlib dev files). Run it HERE, on the
# development machine; the device session carries the folder (run's carry: [".gpubundle"]) and
# tools/gpu_check.sh uses it when a native `make CUDA=1 AUDIO=0` cannot find those libraries:
#   .gpubundle/obj.tar  derf's CPU objects of an AUDIO=0 build (no libsndfile, libsamplerate, FFTW:
#                       the GPU check uses none of them), -march=x86-64-v3 so any recent x86-64 host
#                       runs them; the CUDA sources are still compiled there, by nvcc
#   .gpubundle/lib/     the shared libraries they link against (OpenBLAS and its libgfortran and
#                       libquadmath, cJSON, PCRE2, zlib), under their link names too; the GPU build
#                       links with `make BUNDLE=.gpubundle` (Makefile), which finds them there
# tools/ci_gpu_dryrun.sh proves it: it builds the bundle, then links and starts the bundled binaries
# with the system copies of these libraries (and the audio/FFT libraries and headers) hidden.
# Takes a few minutes (builds in a scratch copy of the tracked tree; the normal build/ is untouched).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
B=$ROOT/.gpubundle
TMP=$(mktemp -d /tmp/derf-bundle.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$TMP"
# untracked but not ignored files (work in progress) travel to the device too
git ls-files -z --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$TMP"
echo "gpu_bundle: building the CPU objects (-march=x86-64-v3) in $TMP"
( cd "$TMP" && nice -n 15 make -j"$(nproc)" ARCH="-march=x86-64-v3" AUDIO=0 build/libderf.a \
    $(cd "$TMP" && ls src/cli/*.c | sed 's|^|build/|; s|\.c$|.o|') >/dev/null )
rm -rf "$B"
mkdir -p "$B/lib"
( cd "$TMP" && find build -name '*.o' -path 'build/src/*' ! -path 'build/src/cuda/*' | sort | tar -cf "$B/obj.tar" -T - )
BLAS_DIR=/usr/lib/x86_64-linux-gnu/openblas-openmp
cp -L "$BLAS_DIR/libopenblas.so.0" "$B/lib/"
for l in libgfortran.so.5 libquadmath.so.0; do cp -L "/lib/x86_64-linux-gnu/$l" "$B/lib/"; done
for l in libcjson.so.1 libpcre2-8.so.0 libz.so.1; do
  cp -L "/usr/lib/x86_64-linux-gnu/$l" "$B/lib/" 2>/dev/null || cp -L "/lib/x86_64-linux-gnu/$l" "$B/lib/"
  cp "$B/lib/$l" "$B/lib/${l%.[0-9]*}"   # the link-time name (libcjson.so ...), as a plain copy
done
# the sources the objects were built from: tools/gpu_check.sh warns when the tree it runs on differs
( cd "$TMP" && find src include tests -type f \( -name '*.c' -o -name '*.h' \) | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1 ) > "$B/stamp"
du -sh "$B"
echo "gpu_bundle: done; on the GPU machine: sh tools/gpu_check.sh (carry .gpubundle)"

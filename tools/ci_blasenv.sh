#!/bin/sh
# ci_blasenv.sh: runs the test suite once more under another OpenBLAS kernel set (.ci/run calls it after
# `make test`): OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=512, as some machines set them because older
# OpenBLAS builds miscompute on new processors. The kernels round some rows differently from the native ones
# (a row of a matrix product may differ in its last bit at another row position), so this catches results
# that rely on BLAS outputs being bit-identical. The test binaries of `make test` are reused (nothing is
# rebuilt). Skipped, with a line saying so, on a processor without AVX2/FMA (the Haswell kernels need them).
set -eu
cd "$(dirname "$0")/.."
if ! grep -qw avx2 /proc/cpuinfo || ! grep -qw fma /proc/cpuinfo; then
  echo "ci_blasenv: no AVX2/FMA on this processor, the Haswell kernels cannot run here; skipped"
  exit 0
fi
export OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=512
lib=$(ldd ./derf | awk '/libopenblas/ {print $3; exit}')
core=$(/usr/bin/python3 -c "import ctypes, sys; l = ctypes.CDLL(sys.argv[1]); l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())" "$lib" 2>/dev/null || echo "unknown")
echo "ci_blasenv: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE OPENBLAS_L2_SIZE=$OPENBLAS_L2_SIZE (OpenBLAS core: $core)"
start=$(date +%s)
make test
echo "ci_blasenv: suite under the Haswell kernels took $(( $(date +%s) - start )) s"

#!/bin/sh
# ci_cuda.sh: the CUDA part of CI (.ci/run calls it after `make test`). Where nvcc exists, compiles
# the CUDA backend (`make CUDA=1`: libderf-cuda.a, ./derf and build/cuda/cuda_check; no GPU needed)
# and runs the check program, which exits 77 ("GPU run pending") on a machine without a GPU; then
# relinks the CPU ./derf. Without nvcc it says so and succeeds.
set -eu
cd "$(dirname "$0")/.."
NVCC="${NVCC:-}"
[ -z "$NVCC" ] && NVCC="$(command -v nvcc 2>/dev/null || true)"
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if [ -z "$NVCC" ]; then
  echo "ci_cuda: no nvcc, CUDA backend not compiled"
  exit 0
fi
start=$(date +%s)
make CUDA=1 NVCC="$NVCC" -j"$(nproc)"
echo "ci_cuda: CUDA build took $(( $(date +%s) - start )) s"
if ldd ./derf | grep -q libnccl; then echo "ci_cuda: NCCL linked (multi-GPU train-lm under mpirun compiled)"
else echo "ci_cuda: no NCCL (or no MPI): train-lm --device cuda under mpirun refuses with one line"; fi
rc=0
./build/cuda/cuda_check || rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
  echo "ci_cuda: cuda_check failed (exit $rc)" >&2
  exit 1
fi
make

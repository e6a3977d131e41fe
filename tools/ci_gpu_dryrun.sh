#!/bin/sh
# ci_gpu_dryrun.sh: CI's dry run of the GPU check on a machine without a GPU (.ci/run calls it after
# tools/ci_cuda.sh, whose CUDA objects it reuses). It builds .gpubundle/ (tools/gpu_bundle.sh), copies the
# tree as the device session gets it, and runs tools/gpu_check.sh there inside a mount namespace
# (unshare -m, root) in which the system copies of every library the bundle ships are hidden, as are the
# audio/FFT libraries and the headers of all of them: so the check takes the bundle path, and the link and
# the run can only use the bundled copies. The hidden view of /usr/lib/x86_64-linux-gnu is a folder of
# links to the real one minus the hidden names, bind-mounted over it. Then, with the runtime libz and
# libpcre2-8 hidden too (the toolchain needs them, so only now), the bundled ./derf and
# build/cuda/cuda_check must start. Fails on any departure; without nvcc or without unshare it says so
# and succeeds. For iterating on it: DERF_DRYRUN_REUSE=1 keeps an existing .gpubundle (no rebuild),
# DERF_DRYRUN_KEEP=1 keeps the scratch folder.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
NVCC="${NVCC:-}"
[ -z "$NVCC" ] && NVCC="$(command -v nvcc 2>/dev/null || true)"
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if [ -z "$NVCC" ]; then echo "ci_gpu_dryrun: no nvcc, GPU check dry run skipped"; exit 0; fi
if ! unshare -m true 2>/dev/null; then
  echo "ci_gpu_dryrun: unshare -m not permitted here (needs root): GPU check dry run skipped"
  exit 0
fi
T0=$(date +%s)
fail() { echo "ci_gpu_dryrun: FAIL: $*" >&2; exit 1; }

if [ "${DERF_DRYRUN_REUSE:-0}" = 1 ] && [ -f .gpubundle/obj.tar ]; then echo "ci_gpu_dryrun: reusing .gpubundle"
else sh tools/gpu_bundle.sh; fi
W=$(mktemp -d /tmp/derf-dryrun.XXXXXX)
[ "${DERF_DRYRUN_KEEP:-0}" = 1 ] || trap 'rm -rf "$W"' EXIT
mkdir -p "$W/tree" "$W/orig" "$W/hide1" "$W/hide2" "$W/out"
# the tree as the device gets it: tracked and untracked-not-ignored files, and the carried bundle
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$W/tree"
git ls-files -z --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$W/tree"
cp -a .gpubundle "$W/tree/"
# the CUDA objects tools/ci_cuda.sh compiled (same sources and flags; make redoes any older than its source)
if [ -d build/src/cuda ]; then
  mkdir -p "$W/tree/build/src/cuda"
  cp -p build/src/cuda/*.o "$W/tree/build/src/cuda/" 2>/dev/null || true
fi

# the hidden views of /usr/lib/x86_64-linux-gnu: links into $W/orig (the real folder, bind-mounted there
# inside the namespace), without the names matching HIDE (hide1), nor the runtime libz/libpcre2 (hide2)
L=/usr/lib/x86_64-linux-gnu
HIDE='libopenblas* openblas-* libblas* blas libcblas* liblapack* lapack libgfortran* libquadmath* libcjson*
      libfftw3* libsndfile* sndfile libsamplerate* libz.so libz.a libpcre2-8.so libpcre2-8.a'
for e in "$L"/*; do
  n=${e##*/}
  h=0
  for p in $HIDE; do case $n in $p) h=1 ;; esac; done
  [ $h = 1 ] && continue
  ln -s "$W/orig/$n" "$W/hide1/$n"
  case $n in libz.so*|libpcre2-8.so*) continue ;; esac
  ln -s "$W/orig/$n" "$W/hide2/$n"
done
echo '#error hidden by tools/ci_gpu_dryrun.sh' > "$W/nohdr.h"
HDRS=""
for h in cblas.h cjson/cJSON.h pcre2.h zlib.h fftw3.h sndfile.h samplerate.h; do
  f=$(printf '#include <%s>\n' "$h" | cc -DPCRE2_CODE_UNIT_WIDTH=8 -E -x c - 2>/dev/null | \
      sed -n "s|^# [0-9]* \"\\(/[^\"]*/$(basename "$h")\\)\".*|\\1|p" | head -1)
  [ -n "$f" ] && HDRS="$HDRS $(readlink -f "$f")"
done

echo "ci_gpu_dryrun: tools/gpu_check.sh in $W/tree with the system's copies of the bundled libraries hidden"
set +e
unshare -m sh -c "
  set -e
  mount --bind '$L' '$W/orig'
  for f in $HDRS; do mount --bind '$W/nohdr.h' \"\$f\"; done
  mount --bind '$W/hide1' '$L'
  set +e
  cd '$W/tree' && OUT='$W/out' GPU_CHECK_CPU_THREADS=1 sh tools/gpu_check.sh
  echo \"gpu_check exit \$?\"
  # the start: runtime libz and libpcre2-8 hidden as well
  mount --bind '$W/hide2' '$L' || exit 1
  ./derf --help > /dev/null; echo \"start derf exit \$?\"
  ./build/cuda/cuda_check; echo \"start cuda_check exit \$?\"
" > "$W/run.txt" 2>&1
set -e
cat "$W/run.txt"
grep -q 'build: bundle' "$W/run.txt" || fail "the check did not build from the bundle (log: above)"
grep -q '^start derf exit 0$' "$W/run.txt" || fail "the bundled ./derf did not start with the system libraries hidden"
grep -q '^start cuda_check exit 77$' "$W/run.txt" || fail "the bundled cuda_check did not start (expected exit 77, no GPU)"
readelf -d "$W/tree/derf" | grep -q '(RPATH).*\.gpubundle/lib' || fail "./derf has no DT_RPATH to .gpubundle/lib"
# the dry run itself: every section reported as skipped for want of a GPU, the CPU end-to-end runs real,
# the table written, and what comes back from the device fits the tool (at most 8 files: here 2)
S="$W/out/summary.txt"
[ -f "$S" ] && [ -f "$W/out/logs.tar.gz" ] || fail "no summary.txt / logs.tar.gz in \$OUT"
[ "$(find "$W/out" -type f | wc -l)" -le 8 ] || fail "more than 8 files in \$OUT: $(ls "$W/out")"
for sec in norms ops linear gpt2 vit; do
  grep -q "section $sec on no GPU seen: no-gpu" "$S" || fail "section $sec not reported as no-gpu"
done
grep -q 'train-lm: CPU run: final val loss .*GPU runs skipped' "$S" || fail "the CPU train-lm run did not finish"
grep -q 'train (ViT): CPU run: final test loss .*GPU runs skipped' "$S" || fail "the CPU train run did not finish"
grep -q 'targets (on no GPU seen' "$S" || fail "no table in summary.txt"
tar -tzf "$W/out/logs.tar.gz" | grep -q 'gpu_check/check_vit.log' || fail "logs.tar.gz lacks the section logs"
echo "ci_gpu_dryrun: ok in $(( $(date +%s) - T0 )) s (bundle built, linked and started with the system copies hidden; dry run complete)"

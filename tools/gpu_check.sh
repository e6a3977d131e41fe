#!/bin/sh
# gpu_check.sh: THE GPU check of the CUDA backend, one command on an H100/H200 machine (docs/cuda.md):
#   1. builds (`make CUDA=1 AUDIO=0`: no audio/FFT libraries needed; where the image lacks derf's CPU
#      libraries, `make CUDA=1 BUNDLE=.gpubundle` with the prebuilt CPU objects and libraries of
#      .gpubundle/, made on the development machine by tools/gpu_bundle.sh; the CUDA sources are always
#      compiled here by nvcc);
#   2. runs every GPU kernel against the CPU reference on fresh random inputs (build/cuda/cuda_check),
#      one process per section (norms, ops, linear, gpt2, vit), each with its pass/fail;
#   3. GPT-2 and ViT on the GPU vs the CPU: one step's gradients and a 20-step loss curve of small
#      models from the same init on the same batches (part of cuda_check), then `derf train-lm` and
#      `derf train` end to end on the CPU, on the GPU, and a GPU checkpoint resumed on the CPU;
#   4. benchmarks the norm kernels (16384x768, bf16 and fp32), derf's GPT-2 124M step (B=16, T=1024,
#      bf16) and ViT-S/16 step (224x224x3, B=128, bf16), and runs the PyTorch peers on the same GPU
#      (tools/bench_torch_gpu.py: norms eager and torch.compile, ViT-S/16 eager, GPT-2 124M eager and
#      compiled);
#   5. prints one table.
# Results: the device tool returns at most 8 files, so $OUT (else build/gpu_check.out) holds exactly two,
# rewritten after every stage (a run cut short keeps what it had): summary.txt (the stage lines so far,
# then the table) and logs.tar.gz (every log, from build/gpu_check/).
# Order and time (A5 of the first-GPU-run issue): the peer timings the targets need (PyTorch norms, GPT-2
# 124M eager and torch.compile) run right after derf's checks and benchmarks, with time reserved for them:
# GPU_CHECK_BUDGET (default 420 s) is the plan; each stage's limit is its own cap, cut so that 260 s of
# the plan stay for those peers (but never below the stage's minimum); GPU_CHECK_HARD (default 520 s:
# give the device command timeout_s >= 560) is never passed, later stages are skipped and say so.
# Stage caps / minimums (s): build 240 / 240; each check section 60 / 30; each derf benchmark part 45 / 20;
# torch norms 80 / 40 (compiles only derf and layernorm in bf16); torch GPT-2 eager + compile 220 / 150;
# then the end-to-end runs (60 each) and the torch ViT eager step (45) in what is left.
# Expected on an H100: build 60-90, checks 20-40, derf benchmarks 30-45, torch norms 30-50, torch GPT-2
# 100-180 (a cold torch.compile is most of it), end to end 40, torch ViT 20: about 6-7 minutes.
# DERF_FORCE_BUNDLE=1 takes the .gpubundle path even where the headers exist (to test it).
# The benchmarks and the end-to-end runs happen whenever the build succeeded.
# Exit status: 0 when the build and every check section passed, 1 otherwise.
set -u
cd "$(dirname "$0")/.."
LOG=build/gpu_check
RES=${OUT:-build/gpu_check.out}
rm -rf "$LOG"
mkdir -p "$LOG" "$RES"
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
say() { echo "[gpu_check $(el)s] $*" | tee -a "$LOG/progress.txt"; }
# summary.txt and logs.tar.gz in $RES, each written under a temporary name and renamed
publish() {
  { cat "$LOG/progress.txt"; [ -f "$LOG/table.txt" ] && cat "$LOG/table.txt"; } > "$RES/summary.txt.tmp" 2>/dev/null
  mv -f "$RES/summary.txt.tmp" "$RES/summary.txt"
  tar -czf "$RES/logs.tar.gz.tmp" -C build gpu_check 2>/dev/null && mv -f "$RES/logs.tar.gz.tmp" "$RES/logs.tar.gz"
}
JOBS=$(nproc 2>/dev/null || echo 8)
BUDGET=${GPU_CHECK_BUDGET:-420}
HARD=${GPU_CHECK_HARD:-520}
PEERS=260   # the plan's seconds kept for torch norms (60) and torch GPT-2 (200)
# lim CAP RESERVE MIN: the next stage's time limit: CAP, cut so that RESERVE seconds of the plan stay for
# the stages after it that are guaranteed their time, but at least MIN; never past HARD less 15 s (the
# last publish); 0: skip it
lim() {
  e=$(el); l=$(( BUDGET - e - $2 ))
  [ $l -gt $1 ] && l=$1
  [ $l -lt $3 ] && l=$3
  h=$(( HARD - e - 15 )); [ $l -gt $h ] && l=$h
  [ $l -lt 5 ] && l=0
  echo $l
}

# python with torch: the image's plain python3, else Debian's
PY=python3
python3 -c 'import torch' 2>/dev/null || PY=/usr/bin/python3

# CUDA toolkit: $CUDA_HOME, else /usr/local/cuda, else the one whose nvcc is on PATH
if [ -z "${CUDA_HOME:-}" ]; then
  CUDA_HOME=/usr/local/cuda
  [ -x "$CUDA_HOME/bin/nvcc" ] || { n=$(command -v nvcc 2>/dev/null) && CUDA_HOME=$(dirname "$(dirname "$n")"); }
fi
export CUDA_HOME
say "CUDA toolkit: $CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version 2>/dev/null | tail -1))"
# the card, named in every verdict line (the targets were set on an H200; the default device is an H100)
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
[ -n "$CARD" ] || CARD="no GPU seen"
say "card: $CARD"

# ---- 1. build -------------------------------------------------------------------------------------
build=fail
if [ "${DERF_FORCE_BUNDLE:-0}" != 1 ] && printf '#include <cblas.h>\n#include <cjson/cJSON.h>\n#include <pcre2.h>\n#include <zlib.h>\n' | \
     cc -DPCRE2_CODE_UNIT_WIDTH=8 -E -x c - >/dev/null 2>&1; then
  say "building natively: make CUDA=1 AUDIO=0"
  timeout $(lim 240 0 240) make CUDA=1 AUDIO=0 -j"$JOBS" > "$LOG/build.log" 2>&1 && build=native
elif [ -f .gpubundle/obj.tar ]; then
  say "no OpenBLAS/cJSON/PCRE2/zlib headers here: CPU objects from .gpubundle, CUDA sources compiled here"
  now=$(find src include tests -type f \( -name '*.c' -o -name '*.h' \) | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1)
  [ "$now" = "$(cat .gpubundle/stamp 2>/dev/null)" ] || \
    say "WARNING: .gpubundle was built from other C sources than these: rerun tools/gpu_bundle.sh before carrying it"
  tar -xf .gpubundle/obj.tar
  find build/src -name '*.o' ! -path 'build/src/cuda/*' -exec touch {} +
  # MPI=0: one process; where Open MPI's libraries exist, their own DT_RUNPATH would bypass the bundle
  timeout $(lim 240 0 240) make CUDA=1 MPI=0 -j"$JOBS" BUNDLE=.gpubundle build/cuda/cuda_check derf \
    > "$LOG/build.log" 2>&1 && build=bundle
else
  say "no OpenBLAS/cJSON/PCRE2/zlib headers and no .gpubundle (run tools/gpu_bundle.sh on the dev machine and carry it)"
fi
warn=$(grep -c -i 'warning' "$LOG/build.log" 2>/dev/null || true)
say "build: $build ($warn warning lines; log build.log)"
[ "$build" = fail ] && tail -20 "$LOG/build.log" 2>/dev/null | tee -a "$LOG/progress.txt"
publish

# ---- 2. kernels vs CPU: one process per section (norms, ops, linear, gpt2, vit), so a CUDA error or a
# crash loses that section only ----------------------------------------------------------------------
check=skipped
sections=""
if [ "$build" != fail ]; then
  say "kernels vs CPU reference, one process per section"
  : > "$LOG/check.log"
  npass=0; nnogpu=0
  for sec in norms ops linear gpt2 vit; do
    t=$(lim 60 $PEERS 30)
    if [ $t = 0 ]; then rc=124; echo "skipped: out of time" > "$LOG/check_$sec.log"
    else timeout $t ./build/cuda/cuda_check --section $sec > "$LOG/check_$sec.log" 2>&1; rc=$?; fi
    case $rc in 0) st=pass; npass=$((npass + 1)) ;; 77) st=no-gpu; nnogpu=$((nnogpu + 1)) ;; 124) st=timeout ;;
                *) st="FAIL(rc=$rc)" ;; esac
    sections="$sections $sec:$st"
    say "section $sec on $CARD: $st"
    grep -E 'MISMATCH|cuda_check:|SEED' "$LOG/check_$sec.log"
    grep -E 'MISMATCH|cuda_check:' "$LOG/check_$sec.log" >> "$LOG/progress.txt"
    cat "$LOG/check_$sec.log" >> "$LOG/check.log"
    publish
  done
  if [ $npass = 5 ]; then check=pass; elif [ $nnogpu = 5 ]; then check=no-gpu; else check="FAIL:$sections"; fi
fi

# ---- 3. GPT-2 and ViT GPU vs CPU loss curves (run by cuda_check: 20 AdamW steps, same init and batches)
gpt2_curve="not run"
vit_curve="not run"
if [ -f "$LOG/check.log" ] && grep -q ' curve ' "$LOG/check.log"; then
  ok=$(grep '^gpt2.* curve ' "$LOG/check.log" | grep -c ' ok$')
  bad=$(grep '^gpt2.* curve ' "$LOG/check.log" | grep -c 'MISMATCH')
  gpt2_curve="mini GPT-2, 20 steps, derf+layernorm x fp32+bf16: $ok agree, $bad differ (CURVE lines: check_gpt2.log)"
  ok=$(grep '^vit.* curve ' "$LOG/check.log" | grep -c ' ok$')
  bad=$(grep '^vit.* curve ' "$LOG/check.log" | grep -c 'MISMATCH')
  vit_curve="tiny ViT, 20 steps, derf+layernorm, avg+cls, drop path 0+0.2, fp32+bf16: $ok agree, $bad differ"
fi

# ---- 4. benchmarks: derf, then the PyTorch peers the targets need (time reserved for them) -----------
# whenever the build succeeded (a failed check section does not stop the timings), one process per part
if [ "$build" != fail ]; then
  say "derf benchmarks"
  : > "$LOG/bench_derf.log"
  for sec in norms gpt2 vit; do
    t=$(lim 45 $PEERS 20)
    if [ $t = 0 ]; then say "derf bench $sec: skipped (out of time)"; continue; fi
    timeout $t ./build/cuda/cuda_check --no-check --bench --section $sec >> "$LOG/bench_derf.log" 2>&1 || \
      say "derf bench $sec: exit $?"
    publish
  done
  grep '^BENCH' "$LOG/bench_derf.log" >> "$LOG/progress.txt"
fi
say "PyTorch peers ($PY)"
t=$(lim 80 200 40)
if [ $t != 0 ]; then
  PYTHONUNBUFFERED=1 timeout $t $PY tools/bench_torch_gpu.py norms --compile derf,layernorm --compile-dtypes bf16 \
    > "$LOG/bench_torch_norms.log" 2> "$LOG/bench_torch_norms.err" || say "torch norms: exit $? (see bench_torch_norms.err)"
else say "torch norms: skipped (out of time)"; fi
publish
t=$(lim 220 0 150)
if [ $t != 0 ]; then
  PYTHONUNBUFFERED=1 timeout $t $PY tools/bench_torch_gpu.py gpt2 > "$LOG/bench_torch_gpt2.log" 2> "$LOG/bench_torch_gpt2.err" \
    || say "torch gpt2: exit $? (see bench_torch_gpt2.err)"
else say "torch gpt2: skipped (out of time)"; fi
grep -h '^TORCH\|^notorch' "$LOG/bench_torch_norms.log" "$LOG/bench_torch_gpt2.log" >> "$LOG/progress.txt" 2>/dev/null
publish

# ---- 5. end to end (after the peers; each run in what is left, at most 60 s). The CPU runs always run
# (the dry run on a machine without a GPU checks them too); the GPU runs where cuda_check found a GPU.
# lrun LOG ARGS...: one derf run under lim, appended to LOG; skipped (and said) when time is out
lrun() {
  f=$1; shift
  t=$(lim 60 0 0)
  if [ $t = 0 ]; then echo "skipped (out of time): derf $*" >> "$f"; return 1; fi
  timeout $t ./derf "$@" >> "$f" 2>&1
}
gpu=1
[ "$check" = no-gpu ] && gpu=0
# the CPU runs' threads (GPU_CHECK_CPU_THREADS; default 0 = all cores; the CI dry run on a small shared
# machine uses 1, where OpenMP barriers across descheduled threads made the runs 100x slower)
CT="--threads ${GPU_CHECK_CPU_THREADS:-0}"
# derf train-lm --device cuda: the same short run on the CPU and on the GPU, and a GPU checkpoint resumed on
# the CPU (checkpoints are interchangeable); synthetic token shards, vocabulary 64
lm_e2e="not run"
if [ "$build" != fail ]; then
  say "train-lm: CPU vs GPU vs GPU-then-CPU (mini preset, 40 steps)"
  LM=$(mktemp -d /tmp/derf-lm.XXXXXX)
  $PY tools/gpu_table.py --shards "$LM/data" 64
  A="--preset mini --data $LM/data --steps 40 --warmup 5 --lr 2e-3 --batch 8 --seq 64 --eval-every 20 --eval-windows 16 --no-eval-train --seed 1 --log-every 10"
  : > "$LOG/lm.log"
  lrun "$LOG/lm.log" train-lm $A $CT --device cpu --out "$LM/cpu"
  if [ $gpu = 1 ]; then
    lrun "$LOG/lm.log" train-lm $A --device cuda --out "$LM/gpu"
    lrun "$LOG/lm.log" train-lm $A --device cuda --out "$LM/mix" --max-steps 20
    lrun "$LOG/lm.log" train-lm --resume "$LM/mix" $CT --device cpu
    lm_e2e=$($PY tools/gpu_table.py --compare-runs "$LM/cpu" "$LM/gpu" "$LM/mix")
  else
    lm_e2e=$($PY tools/gpu_table.py --compare-runs "$LM/cpu" - -)
  fi
  say "train-lm: $lm_e2e"
  rm -rf "$LM"
  publish
fi

# derf train --device cuda (ViT tiny preset, synthetic 28x28 IDX images, 2 epochs of 16 steps): CPU, GPU
# fp32, GPU bf16, and GPU fp32 for 16 steps resumed on the CPU; final test losses compared
vit_e2e="not run"
if [ "$build" != fail ]; then
  say "train (ViT): CPU vs GPU fp32 vs GPU bf16 vs GPU-then-CPU (tiny preset, 32 steps)"
  VT=$(mktemp -d /tmp/derf-vit.XXXXXX)
  $PY tools/gpu_table.py --idx "$VT/data"
  A="--preset tiny --data $VT/data --epochs 2 --batch 64 --seed 1 --log-every 4"
  : > "$LOG/vit.log"
  lrun "$LOG/vit.log" train $A $CT --device cpu --out "$VT/cpu"
  if [ $gpu = 1 ]; then
    lrun "$LOG/vit.log" train $A --device cuda:fp32 --out "$VT/gpu"
    lrun "$LOG/vit.log" train $A --device cuda --out "$VT/bf16"
    lrun "$LOG/vit.log" train $A --device cuda:fp32 --out "$VT/mix" --max-steps 16
    lrun "$LOG/vit.log" train --resume "$VT/mix" $CT --device cpu
    vit_e2e=$($PY tools/gpu_table.py --compare-vit "$VT/cpu" "$VT/gpu" "$VT/bf16" "$VT/mix")
  else
    vit_e2e=$($PY tools/gpu_table.py --compare-vit "$VT/cpu" - - -)
  fi
  say "train (ViT): $vit_e2e"
  rm -rf "$VT"
  publish
fi

# ---- 6. the PyTorch ViT-S/16 eager step, in what is left ------------------------------------------
t=$(lim 45 0 0)
if [ $t != 0 ]; then
  PYTHONUNBUFFERED=1 timeout $t $PY tools/bench_torch_gpu.py vit --modes eager > "$LOG/bench_torch_vit.log" 2> "$LOG/bench_torch_vit.err" \
    || say "torch vit: exit $? (see bench_torch_vit.err)"
else say "torch vit: skipped (out of time)"; fi
publish

# ---- 7. one table -------------------------------------------------------------------------------------
cat "$LOG"/bench_derf.log "$LOG"/bench_torch_norms.log "$LOG"/bench_torch_vit.log "$LOG"/bench_torch_gpt2.log 2>/dev/null | \
$PY tools/gpu_table.py "$build" "$check" "GPT-2 GPU vs CPU: $gpt2_curve; train-lm: $lm_e2e | ViT GPU vs CPU: $vit_curve; train: $vit_e2e" "$CARD" \
  > "$LOG/table.txt"
cat "$LOG/table.txt"
say "done in $(el)s; summary $RES/summary.txt, logs $RES/logs.tar.gz"
publish
[ "$build" != fail ] && [ "$check" = pass ]

#!/usr/bin/env bash
# CI smoke: runs the README's quick start (`./derf compare`, with only budget options added) and then every
# command of the README's command table that has a default input, in the order a user would run them, each
# at a tiny budget, from an empty folder (no runs/, as in a fresh clone). Asserts exit 0 and the files each
# command promises; prints one line per command with its wall and CPU time; on a failure prints the
# command's whole output and exits 1. Also checks that the tree cites no file a user does not have
# (tools/ci_paths.sh). Called by .ci/run after `make test`; needs `make` (./derf) and `make deps`.
# Usage: bash tools/ci_smoke.sh   (from anywhere; DERF_SMOKE_KEEP=1 keeps the scratch folder)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$ROOT/derf" ] || { echo "ci_smoke: $ROOT/derf is missing: run make first" >&2; exit 1; }
bash "$ROOT/tools/ci_paths.sh" || exit 1

# The user's working folder: a fresh, empty one holding only what a clone has that derf reads at run time
# (the binary and tools/), so the user's own runs/ is never touched and nothing is left behind.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/derf-smoke.XXXXXX")
if [ "${DERF_SMOKE_KEEP:-0}" = 1 ]; then echo "ci_smoke: scratch folder $WORK kept"
else trap 'rm -rf "$WORK"' EXIT; fi
ln -s "$ROOT/derf" "$WORK/derf"
ln -s "$ROOT/tools" "$WORK/tools"
cd "$WORK" || exit 1
[ ! -e runs ] || { echo "ci_smoke: $WORK/runs exists before the first command" >&2; exit 1; }

TIMEFORMAT='%R %U %S'
total=0
# step NAME FILE... -- COMMAND...: runs COMMAND, fails unless it exits 0 and every FILE exists afterwards.
step() {
    local name=$1 files=() log="$WORK/.log" t
    shift
    while [ "$1" != "--" ]; do files+=("$1"); shift; done
    shift
    { time "$@" >"$log" 2>&1; } 2>"$WORK/.time"
    local rc=$?
    read -r wall user sys <"$WORK/.time" || true
    local missing=""
    for f in "${files[@]}"; do [ -s "$f" ] || missing="$missing $f"; done
    if [ $rc -ne 0 ] || [ -n "$missing" ]; then
        echo "ci_smoke: FAILED: $name: $*" >&2
        [ $rc -ne 0 ] && echo "ci_smoke: exit status $rc" >&2
        [ -n "$missing" ] && echo "ci_smoke: missing or empty:$missing" >&2
        echo "----- output of: $* -----" >&2
        cat "$log" >&2
        echo "----- end of output -----" >&2
        exit 1
    fi
    total=$(awk -v a="$total" -v b="$wall" 'BEGIN { printf "%.1f", a + b }')
    printf 'ci_smoke: %-13s %7.1f s wall %7.1f s CPU  %s\n' "$name" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$*"
}

# 1. the quick start: the main job, one epoch on a training subset
step compare runs/compare/report.md runs/compare/curves.svg -- \
    ./derf compare --epochs 1 --train-limit 2048 --test-limit 1000
# 2. the other commands with a default input, in the order a user meets them
step train runs/train/model.safetensors runs/train/state.safetensors runs/train/log.jsonl -- \
    ./derf train --epochs 1 --train-limit 1024 --test-limit 500
step eval -- ./derf eval runs/train/model.safetensors --test-limit 500
step export runs/train/folded.safetensors -- ./derf export --fold runs/train runs/train/folded.safetensors
step "eval (folded)" -- ./derf eval runs/train/folded.safetensors --test-limit 500
step "data text" runs/data/text/train.bin runs/data/text/val.bin -- ./derf data text
step train-lm runs/lm/model.safetensors runs/lm/log.jsonl -- \
    ./derf train-lm --preset test --steps 4 --warmup 1 --batch 2 --eval-every 0 --eval-windows 2
step sample -- ./derf sample runs/lm --length 16
step diagnose -- ./derf diagnose runs/lm --windows 2
step train-dit runs/dit/model_ema.safetensors runs/dit/log.jsonl -- \
    ./derf train-dit --steps 4 --batch 8 --train-limit 256 --eval-train-n 0
step sample-dit samples.png runs/dit/samples.safetensors -- \
    ./derf sample-dit runs/dit/model_ema.safetensors --n 20 --sample-steps 4 --save runs/dit/samples.safetensors
step fd -- ./derf fd --classifier runs/train/model.safetensors --samples runs/dit/samples.safetensors
step "data speech" runs/data/speech/audio.bin runs/data/speech/index.tsv -- ./derf data speech --per-level 3
step train-speech runs/speech/model.safetensors runs/speech/log.jsonl -- ./derf train-speech --smoke
step "data dna" runs/data/dna/human_chr22.dnac -- ./derf data dna
step train-dna runs/dna/model.safetensors runs/dna/log.jsonl -- \
    ./derf train-dna --preset test --steps 4 --batch 2 --seq 256 --eval-windows 4 --out runs/dna
step study runs/study-approx-smoke/report.md -- ./derf study approx --smoke
step "study autosearch" runs/autosearch-smoke/report.md runs/autosearch-smoke/pareto.svg -- ./derf study autosearch --smoke
step functions functions.svg -- ./derf functions
step bench -- ./derf bench --quick
echo "ci_smoke: all commands passed in ${total} s wall"

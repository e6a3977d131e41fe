#!/bin/sh
# CI: `derf study lm --smoke` (docs/studies.md): every case of the language-model sweep for a few steps on the
# test preset, byte-level text from the GPT-2 shards of `derf data text` (built here if missing), then the same
# command again, which must train nothing (the sweep resumes from its result.json files).
set -eu
cd "$(dirname "$0")/.."
[ -f runs/data/text/train.bin ] || ./derf data text
out=$(mktemp -d /tmp/derf-ci-study-lm-XXXXXX)
./derf study lm --smoke --seeds 1 --out "$out" > "$out/first.txt" 2>&1 || { cat "$out/first.txt"; exit 1; }
./derf study lm --smoke --seeds 1 --out "$out" > "$out/second.txt" 2>&1
grep -q "0 runs left" "$out/second.txt" || { echo "ci_study_lm: the rerun trained again"; cat "$out/second.txt"; exit 1; }
grep -q "^| derf |" "$out/report.md"
rm -rf "$out"
echo "ci_study_lm: ok"

#!/bin/sh
# CI: builds every libFuzzer target (tests/fuzz/, clang) and runs each for a few seconds (FUZZ_SECONDS,
# default 5) from fresh seed corpora; fails on any finding. The long runs are recorded in docs/reliability.md.
set -eu
cd "$(dirname "$0")/.."
rm -rf build-fuzz/seeds build-fuzz/corpus build-fuzz/findings
make -j2 fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-5}"

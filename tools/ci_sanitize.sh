#!/bin/sh
# CI: the test suite under AddressSanitizer + UndefinedBehaviorSanitizer with leak detection (make test
# SANITIZE=1: its own build folder, build-san/; any ASan, LSan or UBSan report fails the test that hit it).
# CI runs the tests of every reader, writer and command-line error path (SAN_TESTS below: the hostile-input
# corpus, checked I/O and safetensors, the CLI, DNA, speech, studies, token shards, the tokenizer, parameter
# slabs), which take a few minutes sanitized; the model and training tests (forward/backward parity, the
# trainers, MPI) run 5-20x slower sanitized and would not fit CI's time with the rest. SAN_TESTS=all runs
# the whole suite (docs/reliability.md says what that found).
set -eu
cd "$(dirname "$0")/.."
SAN_TESTS=${SAN_TESTS:-"tests/test_hostile.c tests/test_io.c tests/test_cli.c tests/test_dna.c tests/test_speech.c \
tests/test_study.c tests/test_textdata.c tests/test_tokenizer.c tests/test_params.c"}
if [ "$SAN_TESTS" = all ]; then make -j2 test SANITIZE=1; else make -j2 test SANITIZE=1 TEST_SRC="$SAN_TESTS"; fi

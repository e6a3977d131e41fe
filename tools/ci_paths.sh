#!/usr/bin/env bash
# CI check: the tracked tree cites only what a user has (the repository and the paper). Fails, listing the
# lines, when a file names a development machine's folders (its work folder, its shared notes folder) or notes that are
# not in the repository (recipe.md, tables.md, speech-dna.md, seed-summary, anchors.md, upper-floors.md).
# Cite docs/paper.md (with its section) or the paper's own section/table instead. Run by tools/ci_smoke.sh;
# alone: bash tools/ci_paths.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# bracketed letters: the pattern matches those paths without spelling them, so this file passes the same check
pattern='/wor[k]/|share[d]/|recipe\.md|tables\.md|speech-dna\.md|seed-summary|anchors\.md|upper-floors\.md'
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    hits=$(git grep -n -I -E "$pattern" -- . ':(exclude)tools/ci_paths.sh')
else # an unpacked archive: every file but the build outputs
    hits=$(grep -rnIE "$pattern" --exclude-dir=build --exclude-dir=runs --exclude-dir=.git --exclude=ci_paths.sh .)
fi
if [ -n "$hits" ]; then
    echo "ci_paths: these lines cite a development machine's path or a file that is not in the repository;" >&2
    echo "ci_paths: cite docs/paper.md (section) or the paper's section/table instead:" >&2
    printf '%s\n' "$hits" >&2
    exit 1
fi
echo "ci_paths: no development-machine path or missing-file citation in the tree"

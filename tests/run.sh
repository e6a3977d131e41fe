#!/bin/sh
# Runs every cmocka test binary given on the command line and prints one closing line that sums
# them: "tests: N passed, N failed". Exits non-zero if any test failed or a binary crashed.
passed=0; failed=0; crashed=""
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out"
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
  passed=$((passed + p)); failed=$((failed + f))
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then crashed="$crashed $(basename "$t")"; failed=$((failed + 1)); fi
done
[ -n "$crashed" ] && echo "crashed or exited non-zero:$crashed"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

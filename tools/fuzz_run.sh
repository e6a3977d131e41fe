#!/bin/sh
# Runs libFuzzer targets one at a time (make fuzz; tools/ci_fuzz.sh): fuzz_run.sh DIR SECONDS BIN...
# Seeds come from DIR/make_seeds (into DIR/seeds, made once); each target's corpus grows in DIR/corpus/NAME
# and findings land in DIR/findings/NAME/. One line per target: executions, corpus size, findings; exits
# non-zero if any target found something. nice'd, one process per target (-jobs=1 in effect), 2 GB RSS cap.
set -u
dir=$1; secs=$2; shift 2
[ -d "$dir/seeds" ] || "$dir/make_seeds" "$dir/seeds" || exit 1
bad=0
for bin in "$@"; do
  name=$(basename "$bin")
  mkdir -p "$dir/corpus/$name" "$dir/findings/$name"
  log="$dir/findings/$name.log"
  seeds="$dir/seeds/$name"; [ -d "$seeds" ] || seeds=""
  nice -n 10 "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -close_fd_mask=1 -artifact_prefix="$dir/findings/$name/" "$dir/corpus/$name" $seeds >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corp=$(ls "$dir/corpus/$name" | wc -l)
  found=$(ls "$dir/findings/$name" | wc -l)
  echo "fuzz: $name: ${runs:-0} executions in $secs s, corpus $corp, findings $found (exit $rc)"
  if [ $rc -ne 0 ] || [ "$found" -ne 0 ]; then bad=1; tail -30 "$log"; fi
done
exit $bad

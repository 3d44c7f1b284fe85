#!/usr/bin/env bash
# Runs one test tier: `scripts/test-tier.sh NAME COMMAND...`. Streams the output, keeps it in
# target/test-logs/NAME.log, then prints the tier's `test result:` lines (and failed tests).
# Exits with the command's status.
set -uo pipefail
tier=$1
shift
log_dir=${TEST_LOG_DIR:-target/test-logs}
mkdir -p "$log_dir"
log=$log_dir/$tier.log
echo "=== tier $tier: $*"
start=$(date +%s)
"$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "=== tier $tier: $([ "$rc" -eq 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - start ))s (log: $log)"
grep -E '^test result:' "$log" || echo "(no test result lines: the build failed?)"
if [ "$rc" -ne 0 ]; then
  grep -E '^test .* FAILED$|^---- .* stdout ----$' "$log" || true
fi
exit "$rc"

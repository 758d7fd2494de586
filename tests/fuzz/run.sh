#!/usr/bin/env bash
# run.sh SECONDS — `make fuzz`: a libFuzzer campaign of SECONDS per harness.
# Each harness starts from its seed corpus (tests/fuzz/corpus/<name>/) copied
# to build/fuzz/work/<name>/, so new inputs do not litter the repository;
# crashes are written to tests/fuzz/artifacts/ and make the run fail.
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-300}
mkdir -p tests/fuzz/artifacts
fail=0
for bin in build/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin"); name=${name#fuzz_}
    work=build/fuzz/work/$name
    mkdir -p "$work"
    cp -n tests/fuzz/corpus/"$name"/* "$work"/ 2>/dev/null || true
    echo "== fuzz_$name for ${secs}s"
    if ! "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix=tests/fuzz/artifacts/"$name"- "$work" \
        >"build/fuzz/$name.log" 2>&1; then
        echo "fuzz_$name FAILED: see build/fuzz/$name.log and tests/fuzz/artifacts/"
        fail=1
    fi
    grep -E '^stat::number_of_executed_units|^stat::peak_rss' "build/fuzz/$name.log" | sed 's/^/   /'
done
exit $fail

#!/usr/bin/env bash
# Wall time of the edit-run loop, `make test-fast`, against the same tiers with every test (what
# test-fast ran before the `slow` marker: lint without mypy, all of programs and orchestrator),
# alternately in one run so that both see the same machine load. Both with ALL=1 (every quick test,
# whatever changed): what a change selects is bench/test_fast_changes.py's measure.
#
#   bench/test_fast.sh [ROUNDS] [make arguments...]      # default 2 rounds
#   bench/test_fast.sh 3 JOBS=0
#
# Uses the existing .venv as it is (`make -o`: the set-up is not redone, not timed). Prints one line
# per run,
#   variant=fast|all round=N wall_s=... tests=... load_before=...
# then the median of each variant and their ratio. Exits non-zero when a run fails.
set -euo pipefail
rounds=${1:-2}
[ $# -gt 0 ] && shift
cd "$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"
venv=${VENV:-.venv}
log=$(mktemp /tmp/test-fast-bench-XXXXXX)
trap 'rm -f "$log"' EXIT

run() {  # run VARIANT ROUND [make arguments...]
    local variant=$1 round=$2 load start end passed
    shift 2
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    start=$(date +%s.%N)
    make --no-print-directory -o "$venv/.installed" -o "$venv/.runtime" test-fast "$@" >"$log" 2>&1 \
        || { cat "$log" >&2; exit 1; }
    end=$(date +%s.%N)
    passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s}')
    echo "variant=$variant round=$round wall_s=$(echo "$end - $start" | bc) tests=$passed load_before=\"$load\""
}

results=()
for round in $(seq 1 "$rounds"); do
    results+=("$(run fast "$round" ALL=1 "$@")"); echo "${results[-1]}"
    results+=("$(run all "$round" ALL=1 "$@" PYTEST_ARGS='-m "slow or not slow"')"); echo "${results[-1]}"
done
printf '%s\n' "${results[@]}" | python3 -c '
import re, statistics, sys
walls = {}
for line in sys.stdin:
    m = re.search(r"variant=(\w+) .*wall_s=([0-9.]+)", line)
    walls.setdefault(m.group(1), []).append(float(m.group(2)))
fast, full = statistics.median(walls["fast"]), statistics.median(walls["all"])
print(f"median wall_s: fast={fast:.1f} all={full:.1f} ratio={full / fast:.1f}x")
'

#!/usr/bin/env bash
# First-run cost of `make plan` on a fresh clone: wall time and the size of the virtual environment
# it creates, with empty pip and uv caches (what a new machine has).
#
#   bench/fresh_clone.sh REF [make arguments...]
#   bench/fresh_clone.sh main                     # the installer `make` picks (INSTALLER=auto)
#   bench/fresh_clone.sh main INSTALLER=pip
#
# Clones REF of this repository into a temporary directory, runs `make plan` there with the venv
# and the caches in fresh temporary directories, prints one line
#   ref=... args=... wall_s=... venv_mb=... plan_stdout_json=yes|no load_before=...
# and removes everything it made (the clone, the venv, the caches). The tools directory where
# `make` keeps uv (ORCHESTRATE_TOOLS) is a fresh one too, so installing uv itself is counted.
set -euo pipefail
ref=${1:?usage: bench/fresh_clone.sh REF [make arguments...]}
shift
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d /tmp/fastci-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone -q --no-checkout "$repo" "$work/clone"
git -C "$work/clone" checkout -q "$ref"
load=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s.%N)
status=0
(cd "$work/clone" && PIP_CACHE_DIR="$work/pip-cache" UV_CACHE_DIR="$work/uv-cache" ORCHESTRATE_TOOLS="$work/tools" \
  make plan VENV="$work/venv" "$@" >"$work/plan.json" 2>"$work/setup.log") || status=$?
end=$(date +%s.%N)
json=no
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$work/plan.json" 2>/dev/null && json=yes
size=$(du -sm "$work/venv" | cut -f1)
printf 'ref=%s args="%s" status=%s wall_s=%.0f venv_mb=%s plan_stdout_json=%s load_before="%s"\n' \
  "$ref" "$*" "$status" "$(echo "$end - $start" | bc)" "$size" "$json" "$load"
if [ "$status" != 0 ]; then tail -20 "$work/setup.log" >&2; fi

#!/usr/bin/env bash
# Build actionlint (the GitHub Actions workflow linter) from the Go module proxy, once per machine,
# and print the path of the binary as the LAST line of stdout.
#
#   tests/tools/build_actionlint.sh                 # build (or reuse the cache), print the binary
#   ACTIONLINT_VERSION=1.7.12 tests/tools/build_actionlint.sh
#   ACTIONLINT_GO=/opt/go/bin/go tests/tools/build_actionlint.sh   # a specific Go toolchain
#
# Cache: ${ORCHESTRATE_TOOLS_DIR:-$HOME/.cache/orchestrate-tools}/actionlint-<version>/actionlint.
# When the binary is there the script prints it and exits at once, without touching Go or the
# network. Nothing is written into the repository.
#
# Exit codes: 0 ok; 3 no Go toolchain (callers may skip, except on CI); 1 other failure.
set -euo pipefail

log() { printf 'build_actionlint: %s\n' "$*" >&2; }

version="${ACTIONLINT_VERSION:-1.7.12}"
tools_dir="${ORCHESTRATE_TOOLS_DIR:-$HOME/.cache/orchestrate-tools}"
dest="$tools_dir/actionlint-$version"

if [ -x "$dest/actionlint" ]; then
    echo "$dest/actionlint"
    exit 0
fi

# ACTIONLINT_GO=/path/to/go picks the toolchain (tests use a missing one to exercise the skip path)
if [ -n "${ACTIONLINT_GO+set}" ]; then
    go_bin="$ACTIONLINT_GO"
else
    go_bin="$(command -v go || true)"
    if [ -z "$go_bin" ] && [ -x /usr/local/go/bin/go ]; then go_bin=/usr/local/go/bin/go; fi
fi
if [ -z "$go_bin" ] || [ ! -x "$go_bin" ]; then
    log "no Go toolchain on PATH (nor /usr/local/go/bin/go): cannot build actionlint"
    exit 3
fi

mkdir -p "$tools_dir"
stage="$(mktemp -d "$tools_dir/.actionlint-$version-XXXXXX")"
trap 'rm -rf "$stage"' EXIT
started=$(date +%s)
log "go install github.com/rhysd/actionlint/cmd/actionlint@v$version ($("$go_bin" env GOVERSION))"
GOBIN="$stage" CGO_ENABLED=0 GOFLAGS="-buildvcs=false" \
    "$go_bin" install -trimpath -ldflags "-s -w" "github.com/rhysd/actionlint/cmd/actionlint@v$version"
"$stage/actionlint" -version >/dev/null
{
    echo "actionlint=$version"
    echo "go=$("$go_bin" env GOVERSION)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$(( $(date +%s) - started ))"
} >"$stage/VERSIONS"
# publish atomically: a concurrent run either sees no directory or a complete one
if mv -T "$stage" "$dest" 2>/dev/null; then
    trap - EXIT
    chmod 0755 "$dest"
else
    log "another build published $dest first; using it"
fi
log "done in $(( $(date +%s) - started ))s"
echo "$dest/actionlint"

#!/usr/bin/env bash
# Build the Pulumi toolchain the engine-tier tests (tests/engine) run against, from the Go
# module proxy, once per machine, and print the directory holding the binaries as the LAST
# line of stdout.
#
#   tests/engine/build_pulumi.sh            # build (or reuse the cache) and print the bin dir
#   PYTHON=.venv/bin/python tests/engine/build_pulumi.sh
#   GO=/path/to/go ...                      # a given Go (default: go on PATH, else /usr/local/go)
#
# What ends up in the bin dir:
#   pulumi                       the real CLI, github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
#   pulumi-language-python       Python language host built from tests/engine/langhost/main.go
#                                (a small host on the SDK's own python toolchain package: the
#                                upstream host module is not served by the Go module proxy)
#   pulumi-language-python-exec  the program runner script shipped in the sdk/v3 module
#   pulumi-resource-pulumi-python  the dynamic-provider shim shipped in the sdk/v3 module
#   VERSIONS                     what was built, from which versions
#
# Versions. The CLI is built at the version of the installed `pulumi` Python SDK ($PYTHON, default
# python3). If the proxy does not serve github.com/pulumi/pulumi/pkg/v3 at that exact version
# (it skips some releases), the nearest NEWER served version of the same major is used and a
# warning is printed: the CLI is backwards compatible with older SDKs, and the Automation API
# only checks a minimum CLI version. PULUMI_CLI_VERSION=x.y.z forces a version.
#
# Cache: ${ORCHESTRATE_TOOLS_DIR:-$HOME/.cache/orchestrate-tools}/pulumi-<sdk version>/bin. When
# it is complete the script prints it and exits at once, without touching the network or Go.
# The Go wrapper module that drives the build is generated in a scratch dir under the cache and
# removed afterwards; nothing is written into the repository.
#
# Exit codes: 0 ok; 3 no Go toolchain (callers may skip); 4 pulumi SDK not importable; 1 other.
set -euo pipefail

log() { printf 'build_pulumi: %s\n' "$*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

sdk_version="$("$python" -c 'import importlib.metadata as m; print(m.version("pulumi"))' 2>/dev/null)" || {
    log "cannot read the pulumi SDK version with '$python' (set PYTHON to the project venv's python)"
    exit 4
}

tools_dir="${ORCHESTRATE_TOOLS_DIR:-$HOME/.cache/orchestrate-tools}"
dest="$tools_dir/pulumi-$sdk_version"
bin="$dest/bin"
wanted=(pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python)

complete() {
    [ -f "$bin/VERSIONS" ] || return 1
    local f
    for f in "${wanted[@]}"; do [ -x "$bin/$f" ] || return 1; done
    # the language host is rebuilt when its source changes
    [ "$(cat "$dest/langhost.sha256" 2>/dev/null)" = "$(sha256sum "$here/langhost/main.go" | cut -d' ' -f1)" ]
}

if complete; then
    echo "$bin"
    exit 0
fi

if [ -n "${GO:-}" ]; then
    go_bin="$(command -v "$GO" || true)"          # explicit choice, no fallback
else
    go_bin="$(command -v go || true)"
    if [ -z "$go_bin" ] && [ -x /usr/local/go/bin/go ]; then go_bin=/usr/local/go/bin/go; fi
fi
if [ -z "$go_bin" ]; then
    log "no Go toolchain on PATH (nor /usr/local/go/bin/go): cannot build the Pulumi CLI"
    exit 3
fi

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
mkdir -p "$tools_dir"

# One build at a time per version (parallel test sessions); the loser reuses the winner's result.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$tools_dir/.lock-pulumi-$sdk_version"
    flock 9
    if complete; then
        echo "$bin"
        exit 0
    fi
fi
started=$(date +%s)

# -- pick the CLI version ------------------------------------------------------------------
mod_json() { "$go_bin" mod download -json "$1" 2>/dev/null || true; }
json_field() { "$python" -c 'import json,sys; d=json.load(sys.stdin); print(d.get(sys.argv[1]) or "")' "$1"; }

cli_version="${PULUMI_CLI_VERSION:-$sdk_version}"
pkg_info="$(mod_json "github.com/pulumi/pulumi/pkg/v3@v$cli_version")"
if [ -z "$(printf '%s' "$pkg_info" | json_field GoMod)" ]; then
    if [ -n "${PULUMI_CLI_VERSION:-}" ]; then
        log "pkg/v3@v$cli_version is not served by the Go module proxy: $(printf '%s' "$pkg_info" | json_field Error)"
        exit 1
    fi
    log "pkg/v3@v$cli_version is not served by the Go module proxy; looking for the nearest newer release"
    cli_version="$("$go_bin" list -m -versions "github.com/pulumi/pulumi/pkg/v3" | "$python" -c '
import sys
want = tuple(int(x) for x in sys.argv[1].split("."))
best = None
for v in sys.stdin.read().split()[1:]:
    v = v.lstrip("v")
    if "-" in v or "+" in v:
        continue
    t = tuple(int(x) for x in v.split("."))
    if t[0] == want[0] and t >= want and (best is None or t < best):
        best = t
print(".".join(map(str, best)) if best else "")
' "$sdk_version")"
    if [ -z "$cli_version" ]; then
        log "no pkg/v3 release >= $sdk_version is served; set PULUMI_CLI_VERSION"
        exit 1
    fi
    log "WARNING: building the CLI at v$cli_version for Python SDK $sdk_version (exact version not served)"
    pkg_info="$(mod_json "github.com/pulumi/pulumi/pkg/v3@v$cli_version")"
fi
pkg_gomod="$(printf '%s' "$pkg_info" | json_field GoMod)"
sdk_info="$(mod_json "github.com/pulumi/pulumi/sdk/v3@v$cli_version")"
sdk_dir="$(printf '%s' "$sdk_info" | json_field Dir)"
[ -n "$sdk_dir" ] || { log "sdk/v3@v$cli_version is not served by the Go module proxy"; exit 1; }
log "CLI v$cli_version (Python SDK $sdk_version), go $("$go_bin" env GOVERSION), into $bin"

# -- generate the wrapper module -----------------------------------------------------------
work="$(mktemp -d "$tools_dir/.build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
stage="$dest/bin.partial"
mkdir -p "$stage" "$work/langhost"

go_line="$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$pkg_gomod" | head -1)"
cat >"$work/go.mod" <<EOF
module orchestrate.local/pulumitools

go ${go_line:-1.24}

require (
	github.com/pulumi/pulumi/pkg/v3 v$cli_version
	github.com/pulumi/pulumi/sdk/v3 v$cli_version
)
EOF
# Copy pkg/v3's replace directives, except the local-path ones (../sdk): those point into the
# pulumi repo and are exactly what the version requirements above stand for.
"$go_bin" mod edit -json "$pkg_gomod" | "$python" -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    if not new.get("Version"):
        continue
    lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    print(lhs + "=" + new["Path"] + "@" + new["Version"])
' | while read -r rep; do "$go_bin" mod edit -replace "$rep" "$work/go.mod"; done
cp "$here/langhost/main.go" "$work/langhost/main.go"

ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$cli_version"
build() { # build <output name> <package>
    local t0=$(date +%s)
    (cd "$work" && "$go_bin" build -p 2 -trimpath -ldflags "$ldflags" -o "$stage/$1" "$2")
    log "built $1 in $(( $(date +%s) - t0 ))s ($(du -h "$stage/$1" | cut -f1))"
}

# Reuse a CLI built before at this version (e.g. only the language host source changed).
if [ ! -x "$stage/pulumi" ] && [ -x "$bin/pulumi" ] && grep -qx "pulumi_cli=$cli_version" "$bin/VERSIONS" 2>/dev/null; then
    cp -p "$bin/pulumi" "$stage/pulumi"
fi
if [ ! -x "$stage/pulumi" ]; then
    build pulumi github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
fi
build pulumi-language-python ./langhost
sha256sum "$work/langhost/main.go" | cut -d' ' -f1 >"$dest/langhost.sha256"

# The program runner and dynamic-provider shim are Python-side: take them from sdk/v3 at the
# Python SDK's own version when the proxy serves it, else from the CLI's.
shim_dir="$(mod_json "github.com/pulumi/pulumi/sdk/v3@v$sdk_version" | json_field Dir)"
shim_version="$sdk_version"
if [ -z "$shim_dir" ]; then shim_dir="$sdk_dir"; shim_version="$cli_version"; fi
install -m 0755 "$shim_dir/python/cmd/pulumi-language-python-exec" "$stage/pulumi-language-python-exec"
install -m 0755 "$shim_dir/python/dist/pulumi-resource-pulumi-python" "$stage/pulumi-resource-pulumi-python"

"$stage/pulumi" version >/dev/null
{
    echo "pulumi_cli=$cli_version"
    echo "python_sdk=$sdk_version"
    echo "python_exec_shims=$shim_version"
    echo "go=$("$go_bin" env GOVERSION)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$(( $(date +%s) - started ))"
} >"$stage/VERSIONS"

rm -rf "$bin"
mv "$stage" "$bin"
log "done in $(( $(date +%s) - started ))s"
echo "$bin"

#!/usr/bin/env bash
# Sets up the virtual environment for `make` (called by the Makefile, one call per stamp):
#
#   scripts/setup_venv.sh VENV EXTRAS STAMP
#     EXTRAS  "" for the runtime dependencies only (`make plan`), "drill" for `make drill`,
#             "test,drill" for `make test` / `make test-fast` / `make lint`
#     STAMP   the file touched when the install succeeded
#
# Environment: INSTALLER=auto|uv|pip (auto: uv when it is here or can be installed, pip otherwise),
# PYTHON (the interpreter the venv is made from, default python3), ORCHESTRATE_TOOLS (where the
# pinned uv is kept, default ~/.cache/orchestrate-tools).
#
# Every version comes from constraints.txt, with either installer: the project's dependencies, the
# build backend (hatchling, built in isolation) and uv itself. Nothing is byte-compiled at install
# time (pip --no-compile; uv does not by default): Python compiles what it imports, when it does.
# Everything this prints goes to stderr, so `make plan` prints only the JSON document on stdout.
set -euo pipefail
venv=${1:?usage: scripts/setup_venv.sh VENV EXTRAS STAMP}
extras=${2-}
stamp=${3:?usage: scripts/setup_venv.sh VENV EXTRAS STAMP}
installer=${INSTALLER:-auto}
python=${PYTHON:-python3}
tools=${ORCHESTRATE_TOOLS:-$HOME/.cache/orchestrate-tools}
cd "$(dirname "$0")/.."
constraints=$PWD/constraints.txt
spec=".${extras:+[$extras]}"
what=${extras:-runtime}
exec 3>&1 1>&2  # stdout is the caller's document: all of set-up talks on stderr

case $installer in
  auto | uv | pip) ;;
  *) echo "set-up: INSTALLER=$installer is not one of auto, uv, pip" >&2; exit 2 ;;
esac

steps=3
# pin NAME: NAME's line of constraints.txt with its hashes, as a requirements file (the pip that
# installs uv, or replaces a venv's bundled pip, may be older than pip's reading of hashes in a
# constraints file; in a requirements file every pip checks them).
pin() { awk -v name="$1" '$0 ~ "^" name "==" { on = 1; print; next } on && /^[[:space:]]*--hash=/ { print; next } { on = 0 }' "$constraints"; }
say() { echo "set-up [$1/$steps] $2"; }
start=$SECONDS

# 1. The installer: the pinned uv (kept under $tools, installed there with pip when missing), or pip.
uv=""
uv_version=$(sed -n 's/^uv==\([^ \\]*\).*/\1/p' "$constraints")
if [ "$installer" != pip ]; then
  uv_home="$tools/uv-$uv_version"
  if [ ! -x "$uv_home/bin/uv" ]; then
    say 1 "installing uv $uv_version into $uv_home (pip, once per machine)"
    mkdir -p "$tools"
    tmp=$(mktemp -d "$tools/.uv-XXXXXX")
    if "$python" -m venv "$tmp" && pin uv >"$tmp/uv.txt" && "$tmp/bin/python" -m pip install --quiet --no-compile \
        --require-hashes --requirement "$tmp/uv.txt" && "$tmp/bin/uv" --version >/dev/null; then
      rm -rf "$uv_home" && mv "$tmp" "$uv_home"
    else
      rm -rf "$tmp"
      if [ "$installer" = uv ]; then echo "set-up: could not install uv $uv_version (INSTALLER=uv)"; exit 1; fi
      echo "set-up: uv $uv_version could not be installed; using pip (slower)"
    fi
  fi
  [ -x "$uv_home/bin/uv" ] && uv="$uv_home/bin/uv"
fi
if [ -n "$uv" ]; then
  say 1 "installer: uv $uv_version ($uv)"
else
  say 1 "installer: pip"
fi

# 2. The virtual environment (kept when it is there: installs are incremental).
if [ -x "$venv/bin/python" ]; then
  say 2 "virtual environment: $venv (exists)"
elif [ -n "$uv" ]; then
  say 2 "creating $venv ($("$python" -c 'import sys; print(sys.version.split()[0])'), no pip: uv installs)"
  "$python" -m venv --without-pip "$venv"
else
  say 2 "creating $venv ($("$python" -c 'import sys; print(sys.version.split()[0])'), with pip)"
  "$python" -m venv "$venv"
fi

# 3. The project (editable) with its $what dependencies, pinned.
if [ -n "$uv" ]; then
  say 3 "installing the project and its $what dependencies (uv, in parallel)"
  UV_PYTHON_DOWNLOADS=never "$uv" pip install --python "$venv/bin/python" --constraint "$constraints" \
    --build-constraint "$constraints" --editable "$spec"
  echo "uv $uv_version" >"$venv/.installer"
else
  if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    "$venv/bin/python" -m ensurepip --default-pip >/dev/null
  fi
  # The pinned pip (hash-checked), whatever the venv bundled: the passes below need --build-constraint
  # (pip 25.3) and editable installs through the build backend (PEP 660).
  pip_version=$(sed -n 's/^pip==\([^ \\]*\).*/\1/p' "$constraints")
  if ! "$venv/bin/python" -c 'import pip, sys; sys.exit(pip.__version__ != sys.argv[1])' "$pip_version"; then
    "$venv/bin/python" -m pip install --quiet --no-compile --require-hashes --requirement <(pin pip)
  fi
  # pip refuses an editable (or directory) requirement once any hash is in play, so it goes in three
  # passes: resolve the set without hashes (--dry-run: nothing installed), install exactly that set
  # with --require-hashes (every file checked against constraints.txt), then the project alone
  # (--no-deps). --build-constraint is the hashed file in every pass: the isolated build environment
  # installs the build backend (hatchling) from it, hashes checked.
  say 3 "installing the project and its $what dependencies (pip: resolve, then install with hashes)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  sed -e '/^[[:space:]]*--hash=/d' -e 's/[[:space:]]*\\$//' "$constraints" >"$work/pins.txt"
  "$venv/bin/python" -m pip install --quiet --dry-run --ignore-installed --report "$work/report.json" \
    --constraint "$work/pins.txt" --build-constraint "$constraints" --editable "$spec"
  "$venv/bin/python" - "$constraints" "$work/report.json" "$work/hashed.txt" <<'PY'
import json, re, sys
constraints, report, out = sys.argv[1:]
canon = lambda name: re.sub(r"[-_.]+", "-", name).lower()
blocks, current = {}, None
for line in open(constraints).read().splitlines():
    pin = re.match(r"^([A-Za-z0-9_.-]+)==", line)
    if pin:
        current = canon(pin.group(1))
        blocks[current] = [line]
    elif current and line.lstrip().startswith("--hash="):
        blocks[current].append(line)
    else:
        current = None
wanted = [item["metadata"] for item in json.load(open(report))["install"] if not item.get("is_direct")]
missing = [m["name"] for m in wanted if canon(m["name"]) not in blocks]
if missing:
    sys.exit(f"set-up: not pinned in constraints.txt: {', '.join(missing)}")
with open(out, "w") as f:
    for m in wanted:
        f.write("\n".join(blocks[canon(m["name"])]) + "\n")
PY
  PYTHONUNBUFFERED=1 "$venv/bin/python" -m pip install --no-compile --progress-bar off --require-hashes --no-deps \
      --requirement "$work/hashed.txt" |
    awk -v step="set-up [3/$steps]" '
      /^Collecting / { n++; name = $2; sub(/[<>=~!;[].*/, "", name); printf "%s   %d: %s\n", step, n, name; fflush() }
      /^Installing collected packages/ { printf "%s   unpacking %d packages\n", step, n; fflush() }
      /^Successfully installed/ { printf "%s   done\n", step; fflush() }'
  "$venv/bin/python" -m pip install --quiet --no-compile --no-deps --constraint "$work/pins.txt" \
    --build-constraint "$constraints" --editable "$spec"
  echo "pip $("$venv/bin/python" -c 'import pip; print(pip.__version__)')" >"$venv/.installer"
fi
touch "$stamp"
echo "set-up done in $((SECONDS - start)) s: $venv ($what)"

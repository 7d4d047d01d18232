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
say() { echo "set-up [$1/$steps] $2"; }
start=$SECONDS

# 1. The installer: the pinned uv (kept under $tools, installed there with pip when missing), or pip.
uv=""
uv_version=$(sed -n 's/^uv==//p' "$constraints")
if [ "$installer" != pip ]; then
  uv_home="$tools/uv-$uv_version"
  if [ ! -x "$uv_home/bin/uv" ]; then
    say 1 "installing uv $uv_version into $uv_home (pip, once per machine)"
    mkdir -p "$tools"
    tmp=$(mktemp -d "$tools/.uv-XXXXXX")
    if "$python" -m venv "$tmp" && "$tmp/bin/python" -m pip install --quiet --no-compile \
        --constraint "$constraints" "uv==$uv_version" && "$tmp/bin/uv" --version >/dev/null; then
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
  # Editable installs through the build backend need pip 21.3 (PEP 660); older bundled pips are
  # replaced with the pinned one.
  if ! "$venv/bin/python" -c 'import pip, sys; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (21, 3))'; then
    "$venv/bin/python" -m pip install --quiet --no-compile --constraint "$constraints" --upgrade pip
  fi
  say 3 "installing the project and its $what dependencies (pip, one package at a time)"
  # PIP_CONSTRAINT reaches the isolated build environment too (the build backend's pins).
  PIP_CONSTRAINT="$constraints" PYTHONUNBUFFERED=1 "$venv/bin/python" -m pip install --no-compile --progress-bar off \
      --constraint "$constraints" --editable "$spec" |
    awk -v step="set-up [3/$steps]" '
      /^Collecting / { n++; name = $2; sub(/[<>=~!;[].*/, "", name); printf "%s   %d: %s\n", step, n, name; fflush() }
      /^Installing collected packages/ { printf "%s   unpacking %d packages\n", step, n; fflush() }
      /^Successfully installed/ { printf "%s   done\n", step; fflush() }'
  echo "pip $("$venv/bin/python" -c 'import pip; print(pip.__version__)')" >"$venv/.installer"
fi
touch "$stamp"
echo "set-up done in $((SECONDS - start)) s: $venv ($what)"

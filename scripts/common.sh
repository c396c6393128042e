# Shared by the scripts: paths, the pinned tool venv, the stack's ports.
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEV="$ROOT/.dev"
# One target dir for tests, benchmarks and the local stack's builds, outside the clone so CI reuses it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chute/target}"
export SAM_CLI_TELEMETRY=0

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A venv per requirements file, keyed by its hash under ~/.cache (rebuilt when missing).
ensure_venv() { # NAME REQUIREMENTS -> prints the venv path
  local name=$1 requirements=$2 hash venv
  hash=$(sha256sum "$requirements" | cut -c1-16)
  venv="$HOME/.cache/chute/venvs/$name-$hash"
  if [ ! -f "$venv/.complete" ]; then
    log "installing $name tools from $(basename "$requirements") (first use only)"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2 || die "pip install failed for $requirements"
    touch "$venv/.complete"
  fi
  echo "$venv"
}

# Cargo-installed tools (pinned versions) under ~/.cache, built in their own target dir so an install
# never holds the shared one's lock. Prints the bin dir.
CARGO_TOOLS="$HOME/.cache/chute/cargo-tools"
ensure_cargo_tool() { # CRATE VERSION BINARY -> prints the bin dir
  local crate=$1 version=$2 binary=$3
  if [ ! -x "$CARGO_TOOLS/bin/$binary" ]; then
    log "installing $crate $version (first use only)"
    CARGO_TARGET_DIR="$HOME/.cache/chute/tools-target" \
      cargo install --quiet --locked "$crate@$version" --root "$CARGO_TOOLS" >&2 || die "cargo install $crate failed"
  fi
  echo "$CARGO_TOOLS/bin"
}

# Runs `cargo ARGS… --message-format=json` and prints the executable built for target NAME (a bench
# harness is not where `cargo build` puts binaries: its file name carries a hash).
cargo_executable() { # NAME CARGO-ARGS... -> prints the executable's path
  local name=$1 exe
  shift
  exe=$(cargo "$@" --message-format=json | python3 "$ROOT/scripts/stack_tools.py" cargo-executable "$name") || true
  [ -n "$exe" ] || die "build failed (run: cargo $*)"
  echo "$exe"
}

# The stack this command works on: a person's in .dev (database `chute`), or the tests' own in
# .dev/test (database `chute_test`, selected by CHUTE_STACK=test), so tests never touch a person's.
if [ "${CHUTE_STACK:-}" = test ]; then
  export CHUTE_STACK_DIR="$DEV/test"
else
  export CHUTE_STACK_DIR="${CHUTE_STACK_DIR:-$DEV}"
fi

stack_venv() {
  local venv
  venv=$(ensure_venv stack "$ROOT/tools/requirements.txt")
  mkdir -p "$DEV"
  ln -sfn "$venv" "$DEV/venv"
  echo "$venv"
}

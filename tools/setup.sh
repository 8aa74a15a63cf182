#!/usr/bin/env bash
# One setup path for a fresh machine (and a fast no-op on a set-up one):
#   Debian data package, npm packages (solc-js, OpenZeppelin, anvil) from package-lock.json,
#   the Python venv from requirements.lock, and the solc wrapper where py-solc-x looks for it.
# Each step is skipped when its inputs have not changed since it last succeeded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAMPS="$ROOT/.stamps"
SOLC_VERSION="0.8.28"
mkdir -p "$STAMPS"
say() { echo "[setup] $*"; }
fingerprint() { cat "$@" | sha256sum | cut -d' ' -f1; }
fresh() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }

# 1. Debian's Fashion-MNIST (the image task's data).
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = "0" ]; then
    say "installing Debian package dataset-fashion-mnist"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    say "WARNING: not root; run 'sudo apt-get install dataset-fashion-mnist' for the image task"
  fi
fi

# 2. npm packages, exactly as package-lock.json pins them.
command -v npm >/dev/null || { echo "[setup] npm not found: install Node.js 20+ and npm" >&2; exit 1; }
npm_fp="$(fingerprint package.json package-lock.json)"
if ! fresh npm "$npm_fp" || [ ! -d node_modules/solc ]; then
  say "installing npm packages (solc-js, OpenZeppelin Contracts, anvil)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$npm_fp" > "$STAMPS/npm"
fi
ANVIL="$ROOT/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
[ -x "$ANVIL" ] || { echo "[setup] anvil binary missing at $ANVIL" >&2; exit 1; }

# 3. Python venv with the pinned lock (torch's CPU wheel lies in /opt/wheels on these machines).
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null \
  || { echo "[setup] Python 3.11 is required (found: $("$PY" --version 2>&1))" >&2; exit 1; }
[ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }
py_fp="$(fingerprint requirements.lock pyproject.toml)"
if ! fresh python "$py_fp"; then
  say "installing Python packages from requirements.lock (about a minute)"
  find_links=()
  [ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
  .venv/bin/python -m pip install -q --disable-pip-version-check "${find_links[@]}" -r requirements.lock 2> >(grep -v "is ignored: it is neither" >&2)
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$py_fp" > "$STAMPS/python"
fi
# 3b. The `ray` extra (ape run experiment sweep --ray; its test runs in CI) from its own lock,
# constrained by requirements.lock so no pinned package moves. About 45 s, +230 MB. STAKEFL_NO_RAY=1 skips it.
ray_fp="$(fingerprint requirements.lock requirements-ray.lock)"
if [ "${STAKEFL_NO_RAY:-}" != 1 ] && { ! fresh ray "$ray_fp" || ! ls -d .venv/lib/python3*/site-packages/ray-*.dist-info >/dev/null 2>&1; }; then
  say "installing Ray from requirements-ray.lock (about 45 s)"
  find_links=()
  [ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
  .venv/bin/python -m pip install -q --disable-pip-version-check "${find_links[@]}" -c requirements.lock -r requirements-ray.lock 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$ray_fp" > "$STAMPS/ray"
fi

# 4. The solc wrapper: py-solc-x looks for $SOLCX_BINARY_PATH/solc-v<version> (default
# ~/.solcx); Slither looks for `solc` on PATH. The venv's own copy in .venv/solcx, named by a
# .pth file that sets SOLCX_BINARY_PATH for the venv's Python unless already set, keeps
# `ape compile` offline even if HOME changes (no download attempt, no traceback).
SOLCX_DIR="${SOLCX_BINARY_PATH:-$HOME/.solcx}"
mkdir -p "$SOLCX_DIR" .venv/solcx
shim="#!/bin/sh
# solc $SOLC_VERSION over solc-js: see $ROOT/tools/solc.js
exec node \"$ROOT/tools/solc.js\" \"\$@\""
for target in "$SOLCX_DIR/solc-v$SOLC_VERSION" "$ROOT/.venv/solcx/solc-v$SOLC_VERSION" "$ROOT/.venv/bin/solc"; do
  if [ ! -f "$target" ] || [ "$(cat "$target")" != "$shim" ]; then
    printf '%s\n' "$shim" > "$target"; chmod +x "$target"
  fi
done
pth="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/stakefl_solcx.pth"
pth_line="import os; os.environ.setdefault('SOLCX_BINARY_PATH', '$ROOT/.venv/solcx')"
[ -f "$pth" ] && [ "$(cat "$pth")" = "$pth_line" ] || printf '%s\n' "$pth_line" > "$pth"
# anvil on PATH for ape-foundry: a wrapper that drops ape-foundry's --steps-tracing when
# STAKEFL_ANVIL_NO_STEPS_TRACING=1 (set by `ape run simulate`: it reads raw receipts, and
# step tracing makes large transactions about 10x slower). Gas reports keep the tracing.
anvil_shim="#!/bin/sh
# anvil $ANVIL with --steps-tracing dropped when STAKEFL_ANVIL_NO_STEPS_TRACING=1 (see tools/setup.sh)
if [ \"\${STAKEFL_ANVIL_NO_STEPS_TRACING:-}\" = 1 ]; then
  for arg; do shift; [ \"\$arg\" = --steps-tracing ] || set -- \"\$@\" \"\$arg\"; done
fi
exec \"$ANVIL\" \"\$@\""
if [ -L .venv/bin/anvil ] || [ ! -f .venv/bin/anvil ] || [ "$(cat .venv/bin/anvil)" != "$anvil_shim" ]; then
  rm -f .venv/bin/anvil
  printf '%s\n' "$anvil_shim" > .venv/bin/anvil; chmod +x .venv/bin/anvil
fi

# 5. Smoke test: the wrapper answers like native solc (cheap; no compile, no network).
"$SOLCX_DIR/solc-v$SOLC_VERSION" --version | grep -q "Version: $SOLC_VERSION+commit" \
  || { echo "[setup] solc wrapper does not answer --version" >&2; exit 1; }
say "ready (.venv, node_modules, solc $SOLC_VERSION wrapper, anvil)"

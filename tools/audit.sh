#!/usr/bin/env bash
# Slither on contracts/ through the solc-js wrapper (no native solc, no downloads).
#   bash tools/audit.sh          (also: make audit)
# Installs slither-analyzer (pinned) into its own venv .venv-audit once; later runs skip that.
# Fails on any High or Medium finding that is not in TRIAGE below (each entry is explained in
# SPEC.md, "Slither triage"). Low and informational findings are listed, never fatal.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SLITHER_VERSION="0.11.6"
VENV="$ROOT/.venv-audit"
STAMP="$ROOT/.stamps/audit"
say() { echo "[audit] $*"; }

# Accepted High/Medium findings as "detector:Contract.function" (see SPEC.md, "Slither triage").
TRIAGE=(
  "reentrancy-no-eth:VotingRound.openRound"
  "unused-return:VotingRound.settle"
)

# 1. slither-analyzer in its own venv (its pins clash with eth-ape's), once per version.
mkdir -p "$ROOT/.stamps"
if [ ! -x "$VENV/bin/slither" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$SLITHER_VERSION" ]; then
  PY="${PYTHON:-python3.11}"
  command -v "$PY" >/dev/null || PY=python3
  [ -x "$VENV/bin/python" ] || { say "creating .venv-audit"; "$PY" -m venv "$VENV"; }
  say "installing slither-analyzer==$SLITHER_VERSION"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "slither-analyzer==$SLITHER_VERSION" \
    2> >(grep -v "is ignored: it is neither" >&2)
  echo "$SLITHER_VERSION" > "$STAMP"
fi

# 2. The solc wrapper first on PATH: slither-analyzer installs solc-select's `solc` into the venv,
#    which would try to download a compiler. A bin dir holding only our `solc` shadows it.
SOLC_BIN="$VENV/solc-bin"
mkdir -p "$SOLC_BIN"
shim="#!/bin/sh
exec node \"$ROOT/tools/solc.js\" \"\$@\""
if [ ! -f "$SOLC_BIN/solc" ] || [ "$(cat "$SOLC_BIN/solc")" != "$shim" ]; then
  printf '%s\n' "$shim" > "$SOLC_BIN/solc"; chmod +x "$SOLC_BIN/solc"
fi
export PATH="$SOLC_BIN:$VENV/bin:$PATH"
solc --version | grep -q "Version: 0.8.28+commit" || { say "solc wrapper does not answer --version" >&2; exit 1; }
[ -d node_modules/@openzeppelin/contracts ] || { say "node_modules missing: run make setup" >&2; exit 1; }

# 3. One compilation unit with the three contracts (test-only contracts are not audited).
#    OpenZeppelin resolves from node_modules as an include path (the wrapper takes no remappings).
ENTRY="$VENV/entry/Audit.sol"
mkdir -p "$(dirname "$ENTRY")"
cat > "$ENTRY" <<'SOL'
// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;
import "contracts/StakeRegistry.sol";
import "contracts/ProposalPool.sol";
import "contracts/VotingRound.sol";
SOL
REPORT="$VENV/slither-report.json"
rm -f "$REPORT"
say "slither $SLITHER_VERSION on contracts/ (report: ${REPORT#"$ROOT"/})"
slither "$ENTRY" --solc-args "--base-path $ROOT --include-path node_modules" \
  --filter-paths "node_modules|contracts/test" --json "$REPORT" >/dev/null 2>"$VENV/slither.log" || true
[ -s "$REPORT" ] || { cat "$VENV/slither.log" >&2; say "slither produced no report" >&2; exit 1; }

# 4. Summarise; fail on untriaged High/Medium findings.
"$VENV/bin/python" - "$REPORT" "${TRIAGE[@]}" <<'PY'
import json
import sys

report, triage = json.load(open(sys.argv[1])), set(sys.argv[2:])
if not report.get("success"):
    sys.exit(f"[audit] slither failed: {report.get('error')}")
findings = report.get("results", {}).get("detectors", [])


def key(finding):
    for e in finding["elements"]:
        if e["type"] == "function":
            return f"{finding['check']}:{e['type_specific_fields']['parent']['name']}.{e['name']}"
    e = finding["elements"][0] if finding["elements"] else {"name": "?"}
    return f"{finding['check']}:{e['name']}"


order = ["High", "Medium", "Low", "Informational", "Optimization"]
counts = {level: 0 for level in order}
untriaged, seen = [], set()
for f in sorted(findings, key=lambda f: order.index(f["impact"])):
    counts[f["impact"]] += 1
    k = key(f)
    gating = f["impact"] in ("High", "Medium")
    mark = ("triaged " if k in triage else "FAIL    ") if gating else "        "
    print(f"[audit] {mark}{f['impact']:<13} {k}")
    if gating:
        seen.add(k)
        if k not in triage:
            untriaged.append(f)
print("[audit] findings: " + ", ".join(f"{n} {level}" for level, n in counts.items() if n))
for stale in sorted(triage - seen):
    print(f"[audit] note: triage entry {stale} no longer matches a finding; remove it")
for f in untriaged:
    print("\n" + f["description"].strip(), file=sys.stderr)
if untriaged:
    sys.exit(f"[audit] {len(untriaged)} High/Medium finding(s) not triaged in SPEC.md")
print("[audit] ok: no untriaged High or Medium finding")
PY

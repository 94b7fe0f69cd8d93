#!/usr/bin/env bash
# Runs the whole suite; pytest's exit 5 ("no tests collected") is reported as a failure
# with a clear message rather than passing silently.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/lint-imports" || exit 1
"$VENV/bin/python" -m pytest "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests: the suite is missing" >&2
  exit 1
fi
exit $rc

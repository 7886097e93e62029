#!/usr/bin/env bash
# Set up everything and run the whole test suite against real services and the real model.
# Extra arguments go to pytest (e.g. scripts/test.sh -k judge).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh
scripts/browser.sh
say() { printf '\033[1m[test]\033[0m %s\n' "$*" >&2; }

say "ruff"; .venv/bin/ruff check guardrail inference training tests bench deploy
say "mypy"; .venv/bin/mypy
say "pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# Exit 5 means pytest collected no tests: that must never pass as green.
if [ "$rc" = 5 ]; then say "pytest collected no tests"; exit 1; fi
exit "$rc"

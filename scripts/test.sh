#!/usr/bin/env bash
# Set up a virtualenv (made if missing) and run the linters and the whole test suite.
#   TORCH_SPEC  torch requirement installed first (default torch==2.13.0, a CPU build);
#               install the build for your machine by setting it, e.g. TORCH_SPEC=torch
#   DIFFCTL_VENV  virtualenv folder (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${DIFFCTL_VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
# shellcheck disable=SC2086  # TORCH_SPEC may hold options (--index-url ...): split it
python -m pip install -q $TORCH_SPEC
python -m pip install -q -e ".[all,dev]"
# mpc.pytorch (benchmark peer) declares numpy<2 but runs on numpy 2: install without its pins.
python -m pip install -q --no-deps mpc
ruff check .
ruff format --check .
set +e
python -m pytest -n 2 --dist loadfile --durations=20 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "ERROR: pytest collected no tests; the suite must never be empty" >&2
    exit 1
fi
exit "$rc"

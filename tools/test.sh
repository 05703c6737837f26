#!/usr/bin/env bash
# The test suite: unit tests, notebook examples, a papermill run, and the nbdev sync check.
# Arguments go to pytest (e.g. -m slow for the long end-to-end tests, -k retu).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
# Notebooks are the source: exporting and cleaning them must not change the tree.
if git rev-parse --git-dir >/dev/null 2>&1; then
  snap() { git status --porcelain --untracked-files=all | sort; git diff | sha256sum; }
  before=$(snap)
  nbdev-export
  nbdev-clean
  python tools/readme.py
  after=$(snap)
  if [ "$before" != "$after" ]; then
    echo "FAIL: nbdev-export / nbdev-clean / tools/readme.py changed the tree (package, notebooks or README out of sync with nbs/):" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
  fi
fi
set +e
# Two workers on two cores: one thread each (torch would take every core per worker, and the two workers' threads,
# plus the training jobs some tests start, would then fight over the cores).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
python -m pytest -n 2 --dist loadgroup -q "$@"  # loadgroup: the tests sharing a trained registry (xdist_group) run in one process
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "FAIL: pytest collected no tests" >&2; exit 1; fi
exit $rc

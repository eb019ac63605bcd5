#!/usr/bin/env bash
# The whole test suite, as `make test` runs it: two pytest processes side by side.
#
# tests/e2e/test_scheduler.py runs the real Airflow (API server, scheduler, DAG processor,
# LocalExecutor) through two nights, one task at a time: about ten minutes alone. It runs in a
# pytest process of its own, with its own temporary folder, next to the rest of the suite; its
# report follows the main one. Fails when either does. On 2 cores the suite is mostly CPU-bound,
# so this saves little (a 32-minute run: 1845 s beside 1100 s, against ~1930 s one after the other).
# tests/integration/test_real_shop.py (a real export's whole night, every stage) runs in that side
# process too, after it: its pipeline gets a Spark session of its own instead of the one the
# main suite shares across hundreds of tests.
# Extra arguments go to the main run (e.g. `scripts/run_tests.sh -x`).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
SIDE=(tests/e2e/test_scheduler.py tests/integration/test_real_shop.py)
side_tmp="$(mktemp -d -t mkt-scheduler-tests.XXXXXX)"
side_log="$side_tmp/pytest.log"

"$PY" -m pytest -q --durations=5 -p no:cacheprovider --basetemp="$side_tmp/tmp" "${SIDE[@]}" >"$side_log" 2>&1 &
side=$!
# Ctrl-C or a kill reaches the side run as an interrupt, so its fixtures stop Airflow's processes
trap 'kill -INT "$side" 2>/dev/null; wait "$side"; exit 130' INT TERM

"$PY" -m pytest -q --durations=15 "${SIDE[@]/#/--ignore=}" tests "$@"
main_status=$?
wait "$side"
side_status=$?
trap - INT TERM
echo
echo "=== ${SIDE[*]} (ran alongside the suite above)"
cat "$side_log"
[ "$side_status" -eq 0 ] && rm -rf "$side_tmp"  # kept when it failed: its Airflow logs are there
if [ "$main_status" -ne 0 ] || [ "$side_status" -ne 0 ]; then
    echo "test run failed: main suite exit $main_status, ${SIDE[*]} exit $side_status" >&2
    exit 1
fi

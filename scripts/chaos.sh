#!/usr/bin/env bash
# Reliability figures of docs/reliability.md, on the real worker binaries with RabbitMQ,
# Postgres and S3 (s3s-fs, the testkit's `s3_server` example) on this machine.
#
#   bash scripts/chaos.sh crash-loop [JOBS]   # default 500: kill -9 a random worker every
#                                             # 5-20 s and restart it, until every job ends
#   bash scripts/chaos.sh poison [JOBS]       # default 50: one photo aborts classify, one
#                                             # panics it; dead workers are restarted
#
# Each run gets its own database, queue prefix (queues expire) and S3 directory under
# $CHAOS_DIR (default /tmp/m2m-chaos), and prints its figures plus a JSON summary.
# Needs the debug build (`bash scripts/setup.sh`) and the services (`scripts/services.sh`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE="${1:-crash-loop}"
case "$MODE" in
  crash-loop) JOBS="${2:-500}" ;;
  poison) JOBS="${2:-50}" ;;
  *) echo "usage: $0 crash-loop|poison [JOBS]" >&2; exit 2 ;;
esac
TIMEOUT_S="${CHAOS_TIMEOUT_S:-3600}"
BIN="${CARGO_TARGET_DIR:-target}/debug"
STAMP="$(date +%Y%m%d%H%M%S)"
WORK="${CHAOS_DIR:-/tmp/m2m-chaos}/$MODE-$STAMP"
DB="mono2mesh_chaos_$STAMP"
PSQL=(psql -X -q -t -A -h 127.0.0.1 -U postgres)
mkdir -p "$WORK"

bash scripts/services.sh >/dev/null
cargo build -q --locked -p mono2mesh -p mono2mesh-gate -p mono2mesh-classify -p mono2mesh-reconstruct -p mono2mesh-refine
cargo build -q --locked -p mono2mesh-testkit --example s3_server

"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"

# S3: s3s-fs over a directory, on a free port.
"$BIN/examples/s3_server" "$WORK/s3" 0 >"$WORK/s3.log" 2>&1 &
S3_PID=$!
for _ in $(seq 1 50); do grep -q listening "$WORK/s3.log" && break; sleep 0.1; done
S3_ADDR="$(sed -n 's/^listening on //p' "$WORK/s3.log")"
[ -n "$S3_ADDR" ] || { echo "the S3 server did not start" >&2; exit 1; }

export MONO2MESH__DATABASE__URL="postgres://postgres@127.0.0.1:5432/$DB"
export MONO2MESH__BLOB__BACKEND=s3
export MONO2MESH__BLOB__S3__ENDPOINT="http://$S3_ADDR"
export MONO2MESH__BLOB__S3__BUCKET=chaos
export MONO2MESH__BLOB__S3__ACCESS_KEY=mono2mesh-test
export MONO2MESH__BLOB__S3__SECRET_KEY=mono2mesh-test-secret
export MONO2MESH__QUEUE__EXCHANGE_PREFIX="chaos-$STAMP"
export MONO2MESH__QUEUE__EXPIRES_MS=3600000
export MONO2MESH__RECOVERY__DEAD_LETTER_POLL_MS=1000
export MONO2MESH__RECOVERY__SWEEP_INTERVAL_SECS=15
export RUST_LOG="${RUST_LOG:-warn}"

KINDS=(gate classify reconstruct refine)
declare -A PID
DEATHS=0
KILLS=0
CHAOS_PID=""

start_worker() { # kind [extra env...]
  local kind="$1"; shift
  env "$@" "$BIN/mono2mesh-$kind" >>"$WORK/$kind.log" 2>&1 &
  PID[$kind]=$!
  echo "${PID[$kind]}" >"$WORK/$kind.pid"
}

cleanup() {
  [ -n "$CHAOS_PID" ] && kill "$CHAOS_PID" 2>/dev/null || true
  for kind in "${KINDS[@]}"; do
    pid="$(cat "$WORK/$kind.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 2
  kill "$S3_PID" 2>/dev/null || true
}
trap cleanup EXIT

# Photos: generated catalog photos of the shipped specialists' categories.
"$BIN/mono2mesh" dataset photos --categories chair,diningtable,motorbike,bicycle,aeroplane \
  --per-category $(( (JOBS + 4) / 5 )) --seed 5150 --out "$WORK/photos" >/dev/null
mapfile -t PHOTOS < <(find "$WORK/photos" -type f -name '*.jpg' | sort | head -n "$JOBS")
mkdir -p "$WORK/submit"
for p in "${PHOTOS[@]}"; do ln -s "$p" "$WORK/submit/$(basename "$(dirname "$p")")-$(basename "$p")"; done
echo "chaos $MODE: ${#PHOTOS[@]} photos, work dir $WORK"

FAULT_ENV=()
if [ "$MODE" = poison ]; then
  ABORT_HASH="$(sha256sum "${PHOTOS[7]}" | cut -c1-64)"
  PANIC_HASH="$(sha256sum "${PHOTOS[11]}" | cut -c1-64)"
  FAULT_ENV=("MONO2MESH_TEST_FAULT=abort@classify:$ABORT_HASH,panic@classify:$PANIC_HASH")
  echo "poison: ${PHOTOS[7]} aborts classify, ${PHOTOS[11]} panics it"
fi

for kind in "${KINDS[@]}"; do start_worker "$kind" "${FAULT_ENV[@]}"; done
STARTED="$(date +%s)"
"$BIN/mono2mesh" submit "$WORK/submit" --batch chaos >"$WORK/submit.log" 2>&1

if [ "$MODE" = crash-loop ]; then
  # The chaos monkey: kill -9 a random worker every 5-20 s; the supervisor below restarts it.
  (
    while true; do
      sleep $(( 5 + RANDOM % 16 ))
      kind="${KINDS[$(( RANDOM % 4 ))]}"
      pid="$(cat "$WORK/$kind.pid")"
      kill -9 "$pid" 2>/dev/null && echo "$(date +%s) $kind $pid" >>"$WORK/kills.log"
    done
  ) &
  CHAOS_PID=$!
fi

unfinished() {
  "${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM jobs WHERE state NOT IN ('done','rejected','failed')"
}
total_jobs() { "${PSQL[@]}" -d "$DB" -c "SELECT count(*) FROM jobs"; }

# Supervise: restart dead workers (killed by the monkey, or by a poison photo).
while :; do
  for kind in "${KINDS[@]}"; do
    if ! kill -0 "${PID[$kind]}" 2>/dev/null; then
      wait "${PID[$kind]}" 2>/dev/null || true
      DEATHS=$((DEATHS + 1))
      echo "$(date +%s) $kind died" >>"$WORK/deaths.log"
      start_worker "$kind" "${FAULT_ENV[@]}"
    fi
  done
  left="$(unfinished)"
  if [ "$(total_jobs)" -ge "${#PHOTOS[@]}" ] && [ "$left" = 0 ]; then break; fi
  if [ $(( $(date +%s) - STARTED )) -gt "$TIMEOUT_S" ]; then
    echo "timed out with $left jobs unfinished" >&2
    break
  fi
  sleep 1
done
ELAPSED=$(( $(date +%s) - STARTED ))
[ -n "$CHAOS_PID" ] && kill "$CHAOS_PID" 2>/dev/null || true
CHAOS_PID=""
[ -f "$WORK/kills.log" ] && KILLS="$(wc -l <"$WORK/kills.log")"
# Let the janitors clear the dead letters of failed jobs before looking.
sleep 3

q() { "${PSQL[@]}" -d "$DB" -c "$1"; }
echo
echo "== $MODE: ${#PHOTOS[@]} photos in ${ELAPSED} s, $KILLS kill -9, $DEATHS worker deaths restarted"
echo "-- jobs by state"
q "SELECT state, count(*) FROM jobs GROUP BY state ORDER BY state" | sed 's/|/: /'
echo "-- jobs whose final event is not exactly one (must be none)"
q "SELECT j.id, j.state, count(e.id) FROM jobs j LEFT JOIN job_events e ON e.job_id = j.id AND e.event IN ('done','rejected','failed')
   GROUP BY j.id, j.state HAVING count(e.id) <> 1" | sed 's/^/   /'
echo "-- failure reasons"
q "SELECT last_error, count(*) FROM jobs WHERE state = 'failed' GROUP BY last_error" | sed 's/^/   /'
echo "-- rejection reasons (numbers masked)"
q "SELECT regexp_replace(last_error, '[0-9]+([.][0-9]+)?', 'N', 'g') AS r, count(*) FROM jobs WHERE state = 'rejected' GROUP BY r ORDER BY 2 DESC" | sed 's/^/   /'
echo "-- recovery at work"
q "SELECT 'redelivered stage runs (worker died on them): ' || count(*) FROM stage_runs WHERE started > 1"
q "SELECT 'swept (re-published) jobs: ' || count(DISTINCT job_id) FROM job_events WHERE event = 'swept'"
# Orphan blobs: objects under jobs/<id>/ for no job, and stage outputs of jobs that never
# reached that stage.
JOB_IDS="$WORK/job-ids.txt"
q "SELECT id FROM jobs ORDER BY id" >"$JOB_IDS"
BLOB_JOBS="$WORK/blob-jobs.txt"
find "$WORK/s3/chaos/jobs" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort >"$BLOB_JOBS" || true
ORPHANS="$(comm -13 "$JOB_IDS" "$BLOB_JOBS" | wc -l)"
echo "-- orphan blob prefixes (jobs/<id>/ with no job): $ORPHANS"
DONE_WITHOUT_MESH="$(q "SELECT id FROM jobs WHERE state = 'done'" | while read -r id; do
  [ -e "$WORK/s3/chaos/jobs/$id/refine/mesh.glb" ] || echo "$id"; done | wc -l)"
echo "-- done jobs without their mesh.glb: $DONE_WITHOUT_MESH"

STATES_JSON="$(q "SELECT json_object_agg(state, n) FROM (SELECT state, count(*) n FROM jobs GROUP BY state) s")"
MULTI_FINAL="$(q "SELECT count(*) FROM (SELECT j.id FROM jobs j LEFT JOIN job_events e ON e.job_id = j.id AND e.event IN ('done','rejected','failed') GROUP BY j.id HAVING count(e.id) <> 1) x")"
printf '{"mode":"%s","photos":%d,"elapsed_s":%d,"kills":%d,"deaths":%d,"states":%s,"jobs_without_one_final_event":%d,"orphan_prefixes":%d,"done_without_mesh":%d,"work_dir":"%s"}\n' \
  "$MODE" "${#PHOTOS[@]}" "$ELAPSED" "$KILLS" "$DEATHS" "${STATES_JSON:-null}" "$MULTI_FINAL" "$ORPHANS" "$DONE_WITHOUT_MESH" "$WORK" | tee "$WORK/summary.json"

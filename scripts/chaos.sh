#!/usr/bin/env bash
# Reliability figures of docs/reliability.md, on the real worker binaries with RabbitMQ,
# Postgres and S3 (s3s-fs, the testkit's `s3_server` example) on this machine.
#
#   bash scripts/chaos.sh crash-loop [JOBS]   # default 500: kill -9 a random worker every
#                                             # 5-20 s and restart it, until every job ends
#   bash scripts/chaos.sh poison [JOBS]       # default 50: one photo aborts classify, one
#                                             # panics it; dead workers are restarted
#   bash scripts/chaos.sh hostile [GOOD]      # default 30 good photos + 20 hostile ones
#                                             # (scripts/chaos/hostile_files.py), each worker
#                                             # in a 1 GiB memory cgroup; then crafted .pth
#                                             # files through `models import-pix2vox` under
#                                             # the same limit
#   bash scripts/chaos.sh throughput [JOBS]   # default 500: no faults; CPU seconds of each
#                                             # process per job, for docs/capacity.md
#                                             # (scripts/capacity.py reads throughput.json)
#   bash scripts/chaos.sh api [UPLOADS]       # default 300: `serve` under 8 concurrent
#                                             # clients (uploads and reads), Postgres cut
#                                             # for 8 s half-way (scripts/chaos/api_load.py)
#                                             # CHAOS_API_ARGS adds its options, e.g.
#                                             # "--pad-mib 40 --clients 24 --outage-for 0"
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
  hostile) JOBS="${2:-30}" ;;
  api) JOBS="${2:-300}" ;;
  throughput) JOBS="${2:-500}" ;;
  *) echo "usage: $0 crash-loop|poison|hostile|throughput|api [JOBS]" >&2; exit 2 ;;
esac
TIMEOUT_S="${CHAOS_TIMEOUT_S:-3600}"
BIN="${CARGO_TARGET_DIR:-target}/debug"
STAMP="$(date +%Y%m%d%H%M%S)"
WORK="${CHAOS_DIR:-/tmp/m2m-chaos}/$MODE-$STAMP"
DB="mono2mesh_chaos_$STAMP"
PSQL=(psql -X -q -t -A -h 127.0.0.1 -U postgres)
mkdir -p "$WORK"

bash scripts/services.sh >/dev/null
# The test build (binaries, the testkit's s3_server example): building single packages
# would resolve other features and rebuild the shared dependencies.
# CHAOS_SKIP_BUILD=1 runs the binaries already built.
if [ -z "${CHAOS_SKIP_BUILD:-}" ]; then
  bash scripts/setup.sh --tests >"$WORK/build.log" 2>&1 || { tail -20 "$WORK/build.log" >&2; exit 1; }
fi

# Memory cgroups for `hostile`: each worker gets its own limit (cgroup v2 or v1).
MEMORY_LIMIT="${CHAOS_MEMORY_LIMIT:-1073741824}"
memory_cgroup() { # name -> path of a new memory cgroup limited to MEMORY_LIMIT
  local path
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    path="/sys/fs/cgroup/m2m-$STAMP-$1"
    mkdir "$path" && echo "$MEMORY_LIMIT" >"$path/memory.max" && echo 0 >"$path/memory.swap.max" 2>/dev/null
  else
    path="/sys/fs/cgroup/memory/m2m-$STAMP-$1"
    mkdir "$path" && echo "$MEMORY_LIMIT" >"$path/memory.limit_in_bytes"
    echo "$MEMORY_LIMIT" >"$path/memory.memsw.limit_in_bytes" 2>/dev/null || true
  fi
  echo "$path"
}
cgroup_figures() { # path -> "peak MiB, oom kills"
  local path="$1" peak oom
  if [ -f "$path/memory.max_usage_in_bytes" ]; then
    peak="$(cat "$path/memory.max_usage_in_bytes")"
    oom="$(sed -n 's/^oom_kill //p' "$path/memory.oom_control")"
  else
    peak="$(cat "$path/memory.peak" 2>/dev/null || echo 0)"
    oom="$(sed -n 's/^oom_kill //p' "$path/memory.events")"
  fi
  echo "peak $(( peak / 1048576 )) MiB, oom kills ${oom:-0}"
}

"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"

# S3: s3s-fs over a directory (a bucket is a folder), on a free port.
mkdir -p "$WORK/s3/chaos"
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

declare -A CGROUP_OF
start_worker() { # kind [extra env...]
  local kind="$1"; shift
  if [ -n "${CGROUP_OF[$kind]:-}" ]; then
    # Into the cgroup before exec, so every byte the worker allocates is counted.
    bash -c 'echo $$ >"$0/cgroup.procs" && exec env "$@"' "${CGROUP_OF[$kind]}" "$@" "$BIN/mono2mesh-$kind" >>"$WORK/$kind.log" 2>&1 &
  else
    env "$@" "$BIN/mono2mesh-$kind" >>"$WORK/$kind.log" 2>&1 &
  fi
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
  for path in /sys/fs/cgroup/m2m-"$STAMP"-* /sys/fs/cgroup/memory/m2m-"$STAMP"-*; do
    [ -d "$path" ] && rmdir "$path" 2>/dev/null || true
  done
}
trap cleanup EXIT

# Photos: generated catalog photos of the shipped specialists' categories.
PHOTO_COUNT="$JOBS"
[ "$MODE" = api ] && PHOTO_COUNT=25 # uploads reuse them with distinct trailing bytes
"$BIN/mono2mesh" dataset photos --categories chair,diningtable,motorbike,bicycle,aeroplane \
  --per-category $(( (PHOTO_COUNT + 4) / 5 )) --seed 5150 --out "$WORK/photos" >/dev/null
mapfile -t PHOTOS < <(find "$WORK/photos" -type f -name '*.jpg' | sort | head -n "$PHOTO_COUNT")
mkdir -p "$WORK/submit"
for p in "${PHOTOS[@]}"; do ln -s "$p" "$WORK/submit/$(basename "$(dirname "$p")")-$(basename "$p")"; done
if [ "$MODE" = hostile ]; then
  REAL_PTH=""
  [ -f ../shared/reference/pix2vox/F1/Pix2Vox-F-checkpoint.pth ] && REAL_PTH=../shared/reference/pix2vox/F1/Pix2Vox-F-checkpoint.pth
  python3 scripts/chaos/hostile_files.py "$WORK/hostile" "${PHOTOS[0]}" $REAL_PTH >"$WORK/hostile.tsv"
  for p in "$WORK"/hostile/photos/*; do ln -s "$p" "$WORK/submit/hostile-$(basename "$p")"; PHOTOS+=("$p"); done
  # The operator's part of the deal: the decode budget must fit inside the memory limit.
  export MONO2MESH__GATE__LIMITS__DECODE_BUDGET_BYTES="${CHAOS_DECODE_BUDGET:-402653184}"
  for kind in "${KINDS[@]}"; do CGROUP_OF[$kind]="$(memory_cgroup "$kind")"; done
fi
echo "chaos $MODE: ${#PHOTOS[@]} photos, work dir $WORK"

if [ "$MODE" = api ]; then
  echo "api: $JOBS uploads, 3 reads each, 8 clients; Postgres cut for 8 s after 40% of the uploads"
  python3 scripts/chaos/api_load.py --serve "$BIN/mono2mesh" --photos "$WORK/submit" \
    --db-url "$MONO2MESH__DATABASE__URL" --uploads "$JOBS" --out "$WORK/api.json" ${CHAOS_API_ARGS:-}
  exit
fi

FAULT_ENV=()
if [ "$MODE" = poison ]; then
  ABORT_HASH="$(sha256sum "${PHOTOS[7]}" | cut -c1-64)"
  PANIC_HASH="$(sha256sum "${PHOTOS[11]}" | cut -c1-64)"
  FAULT_ENV=("MONO2MESH_TEST_FAULT=abort@classify:$ABORT_HASH,panic@classify:$PANIC_HASH")
  echo "poison: ${PHOTOS[7]} aborts classify, ${PHOTOS[11]} panics it"
fi

# CPU time (user + system, seconds) of a process, and of the shared services' processes.
cpu_seconds() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat" 2>/dev/null || echo 0; }
services_cpu() { # postgres (every server process) and rabbitmq (beam)
  local pg=0 mq=0 pid
  for pid in $(pgrep -x postgres); do pg="$(awk -v a="$pg" -v b="$(cpu_seconds "$pid")" "BEGIN{print a + b}")"; done
  for pid in $(pgrep -f beam.smp); do mq="$(awk -v a="$mq" -v b="$(cpu_seconds "$pid")" "BEGIN{print a + b}")"; done
  echo "$pg $mq"
}
read -r PG_CPU0 MQ_CPU0 < <(services_cpu)

for kind in "${KINDS[@]}"; do start_worker "$kind" "${FAULT_ENV[@]}"; done
STARTED="$(date +%s.%N)"
# Photos refused at the door (empty, over the size cap, not an image) make submit exit 1
# after listing them; the others are submitted.
TIMEFORMAT='%U %S'
{ time "$BIN/mono2mesh" submit "$WORK/submit" --batch chaos >"$WORK/submit.log" 2>&1 || [ "$MODE" = hostile ]; } 2>"$WORK/submit.cpu"
SUBMITTED="$(sed -n 's/^batch [^:]*: \([0-9]*\) submitted.*/\1/p' "$WORK/submit.log" | tail -1)"
SUBMITTED="${SUBMITTED:-${#PHOTOS[@]}}"

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

q_count() { "${PSQL[@]}" -d "$DB" -c "$1"; }
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
  if [ "$(total_jobs)" -ge "$SUBMITTED" ] && [ "$left" = 0 ]; then break; fi
  if [ $(( $(date +%s) - ${STARTED%.*} )) -gt "$TIMEOUT_S" ]; then
    echo "timed out with $left jobs unfinished" >&2
    break
  fi
  sleep 1
done
ELAPSED_EXACT="$(awk -v a="$(date +%s.%N)" -v b="$STARTED" "BEGIN{printf \"%.2f\", a - b}")"
ELAPSED="${ELAPSED_EXACT%.*}"
if [ "$MODE" = throughput ]; then
  # Before the workers stop: what each process spent on this run.
  read -r PG_CPU1 MQ_CPU1 < <(services_cpu)
  {
    printf '{"photos":%d,"elapsed_s":%.2f,"cores":%d,' "${#PHOTOS[@]}" "$ELAPSED_EXACT" "$(nproc)"
    printf '"cpu_s":{"gate":%s,"classify":%s,"reconstruct":%s,"refine":%s,' \
      "$(cpu_seconds "${PID[gate]}")" "$(cpu_seconds "${PID[classify]}")" "$(cpu_seconds "${PID[reconstruct]}")" "$(cpu_seconds "${PID[refine]}")"
    printf '"submit":%s,"s3":%s,"postgres":%s,"rabbitmq":%s},' \
      "$(awk '{print $1 + $2}' "$WORK/submit.cpu")" "$(cpu_seconds "$S3_PID")" \
      "$(awk -v a="$PG_CPU1" -v b="$PG_CPU0" "BEGIN{print a - b}")" "$(awk -v a="$MQ_CPU1" -v b="$MQ_CPU0" "BEGIN{print a - b}")"
    printf '"entered":{"gate":%s,"classify":%s,"reconstruct":%s,"refine":%s}}\n' \
      "$(q_count "SELECT count(*) FROM jobs")" \
      "$(q_count "SELECT count(*) FROM jobs WHERE gated_at IS NOT NULL")" \
      "$(q_count "SELECT count(*) FROM jobs WHERE classified_at IS NOT NULL")" \
      "$(q_count "SELECT count(*) FROM jobs WHERE reconstructed_at IS NOT NULL")"
  } >"$WORK/throughput.json"
fi
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

if [ "$MODE" = hostile ]; then
  echo "-- refused at submission"
  grep -v '^batch ' "$WORK/submit.log" | sed 's/^/   /' || true
  echo "-- hostile photos: outcome per file"
  q "SELECT j.external_id || ': ' || j.state || ' - ' || coalesce(j.last_error, '') FROM jobs j WHERE j.external_id LIKE 'hostile-%' ORDER BY 1" | sed 's/^/   /'
  echo "-- good photos not done (must be none, or rejected for blur/lighting only)"
  q "SELECT external_id || ': ' || state || ' - ' || coalesce(last_error, '') FROM jobs WHERE external_id NOT LIKE 'hostile-%' AND state <> 'done'" | sed 's/^/   /'
  echo "-- memory per worker (limit $(( MEMORY_LIMIT / 1048576 )) MiB, decode budget $(( MONO2MESH__GATE__LIMITS__DECODE_BUDGET_BYTES / 1048576 )) MiB)"
  for kind in "${KINDS[@]}"; do echo "   $kind: $(cgroup_figures "${CGROUP_OF[$kind]}")"; done
  echo "-- crafted checkpoints through \`models import-pix2vox\` in a cgroup of the same limit"
  PTH_CG="$(memory_cgroup import)"
  PTH_BAD=0
  for f in "$WORK"/hostile/pth/*.pth; do
    set +e
    bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$PTH_CG" "$BIN/mono2mesh" models import-pix2vox "$f" --variant F -o "$WORK/imported.safetensors" >"$WORK/import.out" 2>&1
    rc=$?
    set -e
    # 1 is a clean refusal; a signal (134 abort, 137 OOM kill, 139 stack overflow) or 0 is not.
    [ "$rc" = 1 ] || PTH_BAD=$((PTH_BAD + 1))
    echo "   $(basename "$f"): exit $rc, $(wc -l <"$WORK/import.out") line(s): $(head -c 300 "$WORK/import.out" | tr '\n' ' ')"
  done
  echo "   import: $(cgroup_figures "$PTH_CG"); crafted files not refused cleanly: $PTH_BAD"
fi

STATES_JSON="$(q "SELECT json_object_agg(state, n) FROM (SELECT state, count(*) n FROM jobs GROUP BY state) s")"
MULTI_FINAL="$(q "SELECT count(*) FROM (SELECT j.id FROM jobs j LEFT JOIN job_events e ON e.job_id = j.id AND e.event IN ('done','rejected','failed') GROUP BY j.id HAVING count(e.id) <> 1) x")"
printf '{"mode":"%s","photos":%d,"elapsed_s":%d,"kills":%d,"deaths":%d,"states":%s,"jobs_without_one_final_event":%d,"orphan_prefixes":%d,"done_without_mesh":%d,"work_dir":"%s"}\n' \
  "$MODE" "${#PHOTOS[@]}" "$ELAPSED" "$KILLS" "$DEATHS" "${STATES_JSON:-null}" "$MULTI_FINAL" "$ORPHANS" "$DONE_WITHOUT_MESH" "$WORK" | tee "$WORK/summary.json"
[ "$MODE" = throughput ] && cat "$WORK/throughput.json"
exit 0

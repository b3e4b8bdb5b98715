#!/usr/bin/env bash
# bench/compare-tgt.sh: scsiport serve against Linux tgt (tgtd), the same clients over loopback.
#
# Starts both targets with equal 1 GiB RAM-backed LUs (scsiport: the `ram` miniport under the
# Storport model; tgt: a file on /dev/shm with its default rdwr backing store), fills both with
# the same random data, then runs every client against each target in turn, alternating
# scsiport, tgt, scsiport, tgt (ROUNDS times) so that drift of the shared machine cancels:
#
#   iscsi-perf      4 KiB random READ(16) at queue depth 1, 8, 32, 64, RUN_SECS seconds each
#   qemu-img bench  4 KiB sequential read and write (-w) at depth 32, QEMU_COUNT requests each
#
# Around every run it reads the target process's CPU time (utime + stime of all its threads,
# /proc/PID/stat, in clock ticks of `getconf CLK_TCK`) and prints one table: IOPS, MiB/s and
# IOPS per target CPU-second for both targets, and the ratios scsiport/tgt. bench/README.md
# explains the columns.
#
# Everything listens on 127.0.0.1 only. Every process the script starts is stopped on exit
# (trap EXIT), and the whole run is bounded by TOTAL_TIMEOUT seconds.
#
# Knobs (environment):
#   RUN_SECS=5            seconds per iscsi-perf run
#   ROUNDS=2              A B pairs per test
#   QDS="1 8 32 64"       iscsi-perf queue depths
#   QEMU_COUNT=auto       requests per qemu-img bench run; auto: RUN_SECS times the mean of the
#                         two targets' QD 32 IOPS (so about RUN_SECS per run), same for both
#   TOTAL_TIMEOUT=900     hard bound on the script after building scsiport, seconds
#   SCSIPORT_PORT=3262    TGT_PORT=3263 (loopback ports; the tgt control socket uses TGT_PORT too)
#   SCSIPORT_BIN=path     use this binary instead of building crates/cli with cargo
#   PREFILL=1             write random data over both LUs first (0: leave them sparse)
#   PROFILE_DIR=dir       afterwards, `perf record -g` scsiport during one extra QD 32 run and
#                         write dir/perf-report.txt (needs perf: Debian linux-perf)
#   KEEP_LOGS=dir         copy the targets' and clients' logs there
set -euo pipefail

RUN_SECS=${RUN_SECS:-5}
ROUNDS=${ROUNDS:-2}
QDS=${QDS:-"1 8 32 64"}
QEMU_COUNT=${QEMU_COUNT:-auto}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-900}
SCSIPORT_PORT=${SCSIPORT_PORT:-3262}
TGT_PORT=${TGT_PORT:-3263}
PREFILL=${PREFILL:-1}
PROFILE_DIR=${PROFILE_DIR:-}
KEEP_LOGS=${KEEP_LOGS:-}

SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.."
REPO=$PWD

# Build scsiport first (unless given): compile time is not part of the bound below.
if [ -z "${_COMPARE_TGT_INNER:-}" ]; then
  if [ -n "${SCSIPORT_BIN:-}" ]; then
    [ -x "$SCSIPORT_BIN" ] || { echo "compare-tgt: SCSIPORT_BIN=$SCSIPORT_BIN is not executable" >&2; exit 1; }
  else
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
    echo "compare-tgt: building scsiport (release) in $CARGO_TARGET_DIR" >&2
    cargo build --release -q -p scsiport >&2
    SCSIPORT_BIN=$CARGO_TARGET_DIR/release/scsiport
  fi
  SCSIPORT_BIN=$(realpath "$SCSIPORT_BIN")
  export SCSIPORT_BIN
  # The total bound: run the rest under timeout(1), which signals the whole process group
  # (targets and clients included) and kills it 15 s later if anything is still alive.
  export _COMPARE_TGT_INNER=1
  exec timeout -k 15 "$TOTAL_TIMEOUT" "$SELF" "$@"
fi
LU_SIZE=$((1024 * 1024 * 1024))
BS=512                         # logical block size of both LUs (tgt's default)
XFER=4096                      # bytes per request
SCSIPORT_IQN=iqn.2026-11.dev.scsiport:bench
TGT_IQN=iqn.2026-11.dev.scsiport:bench-tgt
TGT_TID=1
TGT_LUN=1                      # tgt keeps LUN 0 for its controller; the disk is LUN 1

log() { printf '%s\n' "$*" >&2; }
die() { log "compare-tgt: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

# ---------------------------------------------------------------------------------------------
# Cleanup: stop every process this script started, remove what it created.
WORK=$(mktemp -d /tmp/compare-tgt.XXXXXX)
TGT_DISK=/dev/shm/compare-tgt-$$.img
SCSIPORT_PID=""
TGT_PID=""
CLIENT_PID=""
PERF_PID=""

stop_pid() { # stop_pid PID SIGNAL: signal, wait up to 5 s, then SIGKILL
  local pid=$1 sig=$2 i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$CLIENT_PID" INT
  stop_pid "$PERF_PID" INT
  stop_pid "$SCSIPORT_PID" TERM
  if [ -n "$TGT_PID" ] && kill -0 "$TGT_PID" 2>/dev/null; then
    # tgtd ignores SIGTERM; it exits on "delete system" once its targets are gone.
    tgtadm -C "$TGT_PORT" --lld iscsi --op update --mode sys --name State -v offline >/dev/null 2>&1 || true
    tgtadm -C "$TGT_PORT" --lld iscsi --op delete --mode target --tid "$TGT_TID" --force >/dev/null 2>&1 || true
    tgtadm -C "$TGT_PORT" --lld iscsi --op delete --mode system >/dev/null 2>&1 || true
  fi
  stop_pid "$TGT_PID" TERM
  if [ -n "$KEEP_LOGS" ]; then mkdir -p "$KEEP_LOGS" && cp "$WORK"/*.log "$KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$WORK" "$TGT_DISK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# ---------------------------------------------------------------------------------------------
# Install what is missing: tgt, libiscsi-bin (iscsi-perf), qemu-img with the iscsi:// driver.
# Debian's qemu-block-extra must match qemu-utils' version exactly (as in scripts/test).
qemu_ok() {
  command -v qemu-img >/dev/null 2>&1 || return 1
  local u b
  u=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null) || return 1
  b=$(dpkg-query -W -f='${Version}' qemu-block-extra 2>/dev/null) || return 1
  [ -n "$u" ] && [ "$u" = "$b" ]
}
pkgs=()
command -v tgtd >/dev/null 2>&1 && command -v tgtadm >/dev/null 2>&1 || pkgs+=(tgt)
command -v iscsi-perf >/dev/null 2>&1 || pkgs+=(libiscsi-bin)
if [ -n "$PROFILE_DIR" ] && ! command -v perf >/dev/null 2>&1; then pkgs+=(linux-perf); fi
need_qemu=0
qemu_ok || need_qemu=1
if [ ${#pkgs[@]} -gt 0 ] || [ $need_qemu = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq || true
  if [ $need_qemu = 1 ]; then
    qv=$(apt-cache madison qemu-block-extra | awk 'NR==1{print $3}')
    [ -n "$qv" ] || die "no qemu-block-extra package in the apt sources"
    pkgs+=("qemu-utils=$qv" "qemu-block-extra=$qv")
  fi
  log "compare-tgt: installing ${pkgs[*]}"
  as_root apt-get install -y --no-install-recommends --allow-downgrades "${pkgs[@]}" >&2
fi
for tool in tgtd tgtadm iscsi-perf qemu-img; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing after installation"
done

# ---------------------------------------------------------------------------------------------
# Helpers.
CLK_TCK=$(getconf CLK_TCK)

# CPU time of a whole process (all threads) in clock ticks: utime and stime, fields 14 and 15
# of /proc/PID/stat, counted after the parenthesised command name (which may contain spaces).
# Sets T_USER and T_SYS.
cpu_ticks() {
  local stat
  stat=$(< "/proc/$1/stat") || die "process $1 is gone"
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  T_USER=${12} T_SYS=${13}
}

now_ns() { date +%s%N; }

# CPU seconds used so far by this shell's waited-for children (second line of bash `times`,
# which must run in this shell, not in a command substitution); sets CHILDREN_CPU.
children_cpu() {
  times > "$WORK/times.txt"
  CHILDREN_CPU=$(awk 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
    printf "%.3f\n", t
  }' "$WORK/times.txt")
}

port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# ---------------------------------------------------------------------------------------------
# scsiport: start it.
port_free "$SCSIPORT_PORT" || die "127.0.0.1:$SCSIPORT_PORT is in use; set SCSIPORT_PORT"
port_free "$TGT_PORT" || die "127.0.0.1:$TGT_PORT is in use; set TGT_PORT"
if [ -e "/var/run/tgtd/socket.$TGT_PORT" ] && pgrep -x tgtd >/dev/null; then
  die "a tgtd may already use control port $TGT_PORT; set TGT_PORT"
fi

cat > "$WORK/scsiport.toml" <<EOF
[[portal]]
listen = "127.0.0.1:$SCSIPORT_PORT"

[[adapter]]
name = "ram0"
miniport = "ram"
model = "storport"
[[adapter.lu]]
target = 0
lun = 0
size = "1 GiB"
block_size = $BS

[[target]]
iqn = "$SCSIPORT_IQN"
initiators = []
[[target.lun]]
lun = 0
adapter = "ram0"
target_id = 0
adapter_lun = 0
EOF

"$SCSIPORT_BIN" serve --config "$WORK/scsiport.toml" > "$WORK/scsiport.log" 2>&1 &
SCSIPORT_PID=$!
for _ in $(seq 100); do
  grep -q '^scsiport: listening on' "$WORK/scsiport.log" && break
  kill -0 "$SCSIPORT_PID" 2>/dev/null || { cat "$WORK/scsiport.log" >&2; die "scsiport serve exited"; }
  sleep 0.1
done
grep -q '^scsiport: listening on' "$WORK/scsiport.log" || die "scsiport serve did not start listening"
SCSIPORT_URL=$(grep -o 'iscsi://[^ ]*' "$WORK/scsiport.log" | head -1)
[ "$SCSIPORT_URL" = "iscsi://127.0.0.1:$SCSIPORT_PORT/$SCSIPORT_IQN/0" ] ||
  die "unexpected URL from scsiport serve: $SCSIPORT_URL"

# ---------------------------------------------------------------------------------------------
# tgt: a 1 GiB file on /dev/shm as LUN 1 of one target, every initiator allowed.
truncate -s "$LU_SIZE" "$TGT_DISK"
tgtd -f -C "$TGT_PORT" --iscsi "portal=127.0.0.1:$TGT_PORT" > "$WORK/tgtd.log" 2>&1 &
TGT_PID=$!
tgtadm_() { tgtadm -C "$TGT_PORT" --lld iscsi "$@"; }
for _ in $(seq 100); do
  tgtadm_ --op show --mode sys >/dev/null 2>&1 && break
  kill -0 "$TGT_PID" 2>/dev/null || { cat "$WORK/tgtd.log" >&2; die "tgtd exited"; }
  sleep 0.1
done
tgtadm_ --op new --mode target --tid "$TGT_TID" -T "$TGT_IQN"
tgtadm_ --op new --mode logicalunit --tid "$TGT_TID" --lun "$TGT_LUN" -b "$TGT_DISK"
tgtadm_ --op bind --mode target --tid "$TGT_TID" -I ALL
TGT_URL="iscsi://127.0.0.1:$TGT_PORT/$TGT_IQN/$TGT_LUN"

# ---------------------------------------------------------------------------------------------
# Fill both LUs with the same random data, so neither serves reads from holes.
if [ "$PREFILL" = 1 ]; then
  log "compare-tgt: filling both LUs with 1 GiB of random data"
  head -c "$LU_SIZE" /dev/urandom > "$TGT_DISK"
  qemu-img convert -n -f raw -O raw "$TGT_DISK" "$SCSIPORT_URL" >&2
fi

# ---------------------------------------------------------------------------------------------
# One run of one client against one target; sets R_OPS (requests completed), R_SECS (seconds
# they took) and R_TICKS (target CPU clock ticks from client start to client exit).
run_client() { # run_client PID URL TEST
  local pid=$1 url=$2 test=$3 out t0 t1 u0 s0 ops secs avg k0 k1 user sys
  out="$WORK/client.log"
  children_cpu
  k0=$CHILDREN_CPU
  cpu_ticks "$pid"
  u0=$T_USER s0=$T_SYS
  t0=$(now_ns)
  case $test in
    qd*)
      timeout -s INT $((RUN_SECS + 30)) \
        iscsi-perf -t "$RUN_SECS" -m "${test#qd}" -b $((XFER / BS)) -r "$url" > "$out" 2>&1 &
      ;;
    qemu-read)
      timeout -s INT 120 \
        qemu-img bench -f raw -t none -n -c "$QEMU_COUNT" -d 32 -s "$XFER" "$url" > "$out" 2>&1 &
      ;;
    qemu-write)
      timeout -s INT 120 \
        qemu-img bench -f raw -t none -n -c "$QEMU_COUNT" -d 32 -s "$XFER" -w "$url" > "$out" 2>&1 &
      ;;
  esac
  CLIENT_PID=$!
  wait "$CLIENT_PID" || { tr '\r' '\n' < "$out" >&2; die "$test against $url failed"; }
  CLIENT_PID=""
  t1=$(now_ns)
  cpu_ticks "$pid"
  user=$((T_USER - u0)) sys=$((T_SYS - s0))
  children_cpu
  k1=$CHILDREN_CPU
  cat "$out" >> "$WORK/clients.log"
  case $test in
    qd*)
      # With -t, iscsi-perf ends with "iops average N (M MB/s)": completions over the
      # measured RUN_SECS seconds (the progress lines are separated by carriage returns).
      avg=$(tr '\r' '\n' < "$out" | awk '/^iops average/ {v=$3} END {print v}')
      [ -n "$avg" ] || { tr '\r' '\n' < "$out" >&2; die "no IOPS from iscsi-perf"; }
      ops=$((avg * RUN_SECS))
      secs=$RUN_SECS
      ;;
    *)
      secs=$(awk '/^Run completed in/ {print $4}' "$out")
      [ -n "$secs" ] || { cat "$out" >&2; die "no run time from qemu-img bench"; }
      ops=$QEMU_COUNT
      ;;
  esac
  R_CLIENT=$(echo "$k0 $k1" | awk '{print $2 - $1}')
  log "$(printf '  %-10s %-8s %8.0f IOPS  %6.2f s  target CPU %5.2f s (user %5.2f)  client CPU %5.2f s  (wall %5.2f s)' \
    "$test" "$([ "$pid" = "$SCSIPORT_PID" ] && echo scsiport || echo tgt)" \
    "$(echo "$ops $secs" | awk '{print $1/$2}')" "$secs" \
    "$(echo "$((user + sys)) $CLK_TCK" | awk '{print $1/$2}')" "$(echo "$user $CLK_TCK" | awk '{print $1/$2}')" \
    "$R_CLIENT" \
    "$(echo "$((t1 - t0))" | awk '{print $1/1e9}')")"
  R_OPS=$ops R_SECS=$secs R_TICKS=$((user + sys))
}

TESTS=()
for qd in $QDS; do TESTS+=("qd$qd"); done
TESTS+=(qemu-read qemu-write)

declare -A OPS SECS TICKS CLIENT
for test in "${TESTS[@]}"; do
  for name in scsiport tgt; do
    OPS[$test,$name]=0 SECS[$test,$name]=0 TICKS[$test,$name]=0 CLIENT[$test,$name]=0
  done
done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "compare-tgt: scsiport $SCSIPORT_URL (pid $SCSIPORT_PID), tgt $TGT_URL (pid $TGT_PID)"
log "compare-tgt: $ROUNDS rounds of: ${TESTS[*]}; load average $LOAD_BEFORE"
for test in "${TESTS[@]}"; do
  if [ "$test" = qemu-read ] && [ "$QEMU_COUNT" = auto ]; then
    QEMU_COUNT=250000
    if [ "${OPS[qd32,tgt]:-0}" -gt 0 ]; then
      QEMU_COUNT=$(echo "${OPS[qd32,scsiport]} ${SECS[qd32,scsiport]} ${OPS[qd32,tgt]} ${SECS[qd32,tgt]} $RUN_SECS" |
        awk '{n = int(($1 / $2 + $3 / $4) / 2 * $5 / 1000) * 1000; print (n < 20000 ? 20000 : n)}')
    fi
    log "compare-tgt: qemu-img bench runs $QEMU_COUNT requests"
  fi
  for _ in $(seq "$ROUNDS"); do
    for name in scsiport tgt; do
      if [ $name = scsiport ]; then pid=$SCSIPORT_PID url=$SCSIPORT_URL; else pid=$TGT_PID url=$TGT_URL; fi
      run_client "$pid" "$url" "$test"
      OPS[$test,$name]=$((OPS[$test,$name] + R_OPS))
      SECS[$test,$name]=$(echo "${SECS[$test,$name]} $R_SECS" | awk '{print $1 + $2}')
      TICKS[$test,$name]=$((TICKS[$test,$name] + R_TICKS))
      CLIENT[$test,$name]=$(echo "${CLIENT[$test,$name]} $R_CLIENT" | awk '{print $1 + $2}')
    done
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# The table.
describe() {
  case $1 in
    qd*) echo "iscsi-perf randread 4K QD ${1#qd}" ;;
    qemu-read) echo "qemu-img bench read 4K d32" ;;
    qemu-write) echo "qemu-img bench write 4K d32" ;;
  esac
}
{
  echo
  echo "scsiport $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?') vs tgt $(tgtd -V 2>/dev/null | awk '{print $NF}'), loopback, 1 GiB RAM LUs, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs"
  echo "$ROUNDS x (scsiport, tgt) per test, alternating; iscsi-perf $RUN_SECS s per run; qemu-img bench $QEMU_COUNT requests per run"
  echo "load average before $LOAD_BEFORE, after $LOAD_AFTER"
  echo
  printf '%-29s| %9s %9s %6s | %8s %8s | %10s %10s %6s | %5s %5s | %5s %5s\n' \
    "" "IOPS" "IOPS" "" "MiB/s" "MiB/s" "IOPS/CPUs" "IOPS/CPUs" "" "tCPU" "tCPU" "cCPU" "cCPU"
  printf '%-29s| %9s %9s %6s | %8s %8s | %10s %10s %6s | %5s %5s | %5s %5s\n' \
    "test" "scsiport" "tgt" "ratio" "scsiport" "tgt" "scsiport" "tgt" "ratio" "sp" "tgt" "sp" "tgt"
  printf '%s\n' "-----------------------------+------------------------------+-------------------+------------------------------+-------------+------------"
  for test in "${TESTS[@]}"; do
    awk -v name="$(describe "$test")" -v hz="$CLK_TCK" -v x="$XFER" \
      -v so="${OPS[$test,scsiport]}" -v ss="${SECS[$test,scsiport]}" -v st="${TICKS[$test,scsiport]}" \
      -v sc="${CLIENT[$test,scsiport]}" \
      -v to="${OPS[$test,tgt]}" -v ts="${SECS[$test,tgt]}" -v tt="${TICKS[$test,tgt]}" \
      -v tc="${CLIENT[$test,tgt]}" 'BEGIN {
        si = so / ss; ti = to / ts
        se = st > 0 ? so / (st / hz) : 0; te = tt > 0 ? to / (tt / hz) : 0
        printf "%-29s| %9.0f %9.0f %5.2fx | %8.1f %8.1f | %10.0f %10.0f %5.2fx | %5.2f %5.2f | %5.2f %5.2f\n",
          name, si, ti, (ti > 0 ? si / ti : 0), si * x / 1048576, ti * x / 1048576,
          se, te, (te > 0 ? se / te : 0), st / hz / ss, tt / hz / ts, sc / ss, tc / ts
      }'
  done
  echo
  echo "ratio = scsiport / tgt. IOPS/CPUs = requests per CPU-second of the target process."
  echo "tCPU = target CPU-seconds per second of run, cCPU = client CPU-seconds per second (2 = both cores)."
} | tee "$WORK/table.txt"

# ---------------------------------------------------------------------------------------------
# Optional: a CPU profile of scsiport during one more QD 32 run.
if [ -n "$PROFILE_DIR" ]; then
  command -v perf >/dev/null 2>&1 || die "perf is missing"
  mkdir -p "$PROFILE_DIR"
  # DWARF call graphs: the release build keeps debug info but no frame pointers.
  perf record -F 1999 --call-graph dwarf,16384 -o "$PROFILE_DIR/perf.data" -p "$SCSIPORT_PID" \
    > "$WORK/perf.log" 2>&1 &
  PERF_PID=$!
  sleep 0.5
  run_client "$SCSIPORT_PID" "$SCSIPORT_URL" qd32
  stop_pid "$PERF_PID" INT
  PERF_PID=""
  perf report --stdio --no-children --sort dso,sym -g none -i "$PROFILE_DIR/perf.data" \
    > "$PROFILE_DIR/perf-flat.txt" 2>/dev/null || true
  perf report --stdio --children --sort sym -g none --percent-limit 1 \
    -i "$PROFILE_DIR/perf.data" > "$PROFILE_DIR/perf-inclusive.txt" 2>/dev/null || true
  perf report --stdio --no-children --sort sym -G --percent-limit 2 \
    -i "$PROFILE_DIR/perf.data" > "$PROFILE_DIR/perf-report.txt" 2>/dev/null || true
  log "compare-tgt: profile in $PROFILE_DIR: perf.data, perf-flat.txt (self time by symbol)," \
    "perf-inclusive.txt (time including callees), perf-report.txt (call graphs)"
fi

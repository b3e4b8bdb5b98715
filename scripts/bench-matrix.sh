#!/usr/bin/env bash
# The in-process benchmark matrix of issue 5: `scsiport bench` 4 KiB randread at QD 1 and 32,
# 1 and 2 submitting threads, both port models, null/ram/file miniports (file on /dev/shm), and
# fio with ioengine=io_uring on the same file at the same depths, each fio run followed at once
# by the file miniport under both models, with their share of fio's IOPS (machines shared with
# other work drift: back-to-back runs keep the ratio honest).
#   scripts/bench-matrix.sh [SECONDS]      (default 3 s per cell)
#   FIO_ONLY=1 scripts/bench-matrix.sh 3   (only the fio section, e.g. to repeat it)
# Under the Storport model the file miniport gets one concurrent channel (one io_uring, one
# message-signaled interrupt) per submitting thread; SCSI Port has one ring.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
command -v fio >/dev/null || { echo "installing fio" >&2; apt-get install -y --no-install-recommends fio >/dev/null; }
cargo build --release -q -p scsiport
bin=${CARGO_TARGET_DIR:-target}/release/scsiport
file=/dev/shm/scsiport-bench.img
trap 'rm -f "$file"' EXIT
rm -f "$file"
# A written 1 GiB file, so reads hit real pages for both scsiport and fio.
dd if=/dev/zero of="$file" bs=1M count=1024 status=none

if [ -z "${FIO_ONLY:-}" ]; then
printf '%-10s %-5s %-8s %3s %3s %12s %10s %10s %10s\n' model mp path qd thr IOPS p50_us p99_us cpu_us/io
for model in storport scsiport; do
  for mp in null ram "file:$file"; do
    for qd in 1 32; do
      for thr in 1 2; do
        j=$("$bin" bench --model "$model" --miniport "$mp" --pattern randread --bs 4096 \
              --qd "$qd" --threads "$thr" --seconds "$secs" --size $((1<<30)) --json)
        python3 - "$model" "${mp%%:*}" "$qd" "$thr" "$j" <<'PY'
import json, sys
m, mp, qd, thr, j = sys.argv[1:]
r = json.loads(j)
print(f"{m:<10} {mp:<5} {r['path']:<8} {qd:>3} {thr:>3} {r['iops']:>12.0f} {r['latency']['p50_us']:>10.2f} {r['latency']['p99_us']:>10.2f} {r['cpu_us_per_io']:>10.3f}")
PY
      done
    done
  done
done
echo
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "fio, ioengine=io_uring, 4 KiB randread on $file, each followed at once by the file miniport"
echo "under both models at the same depth and thread count (IOPS, and % of fio's)"
ms=$(python3 -c "print(max(1, int(float('$secs') * 1000)))")
for qd in 1 32; do
  for thr in 1 2; do
    iops=$(fio --name=r --filename="$file" --ioengine=io_uring --rw=randread --bs=4k \
            --iodepth="$qd" --numjobs="$thr" --group_reporting --time_based --runtime="${ms}ms" \
            --size=1G --output-format=json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))')
    printf 'fio        file  io_uring %3s %3s %12s' "$qd" "$thr" "$iops"
    for model in storport scsiport; do
      mine=$("$bin" bench --model "$model" --miniport "file:$file" --pattern randread --bs 4096 \
              --qd "$qd" --threads "$thr" --seconds "$secs" --size $((1<<30)) --json \
              | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["iops"]))')
      printf '   %s %9s %4s%%' "$model" "$mine" "$(python3 -c "print(round(100 * $mine / max(1, $iops)))")"
    done
    echo
  done
done

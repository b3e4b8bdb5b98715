#!/usr/bin/env bash
# The file-miniport goal of issue 5 measured as paired runs: fio (ioengine=io_uring) and
# `scsiport bench` (Storport model, file miniport) alternate on the same 1 GiB file on /dev/shm,
# 4 KiB randread, at one depth, for 1 and 2 submitting threads, ROUNDS times. On a shared host
# one run of either can land in a slow phase (both swing between about 0.6 and 2.2 million IOPS
# here), so a single pair says little: this prints every pair, then per thread count the
# median of the pair ratios and the ratio of the summed IOPS (both sides saw the same phases).
#   scripts/bench-vs-fio.sh [ROUNDS] [SECONDS] [QD]     (defaults: 20 rounds, 3 s, QD 32)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
secs=${2:-3}
qd=${3:-32}
command -v fio >/dev/null || { echo "installing fio" >&2; apt-get install -y --no-install-recommends fio >/dev/null; }
cargo build --release -q -p scsiport
bin=${CARGO_TARGET_DIR:-target}/release/scsiport
file=/dev/shm/scsiport-vs-fio.img
out=$(mktemp)
trap 'rm -f "$file" "$out"' EXIT
rm -f "$file"
# A written file, so both read real pages.
dd if=/dev/zero of="$file" bs=1M count=1024 status=none
ms=$(python3 -c "print(max(1, int(float('$secs') * 1000)))")

echo "paired runs: fio io_uring then scsiport bench --model storport --miniport file, QD $qd, ${secs} s each"
printf '%5s %3s %12s %12s %6s\n' round thr fio scsiport ratio
for r in $(seq "$rounds"); do
  for thr in 1 2; do
    f=$(fio --name=r --filename="$file" --ioengine=io_uring --rw=randread --bs=4k \
          --iodepth="$qd" --numjobs="$thr" --group_reporting --time_based --runtime="${ms}ms" \
          --size=1G --output-format=json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))')
    s=$("$bin" bench --model storport --miniport "file:$file" --pattern randread --bs 4096 \
          --qd "$qd" --threads "$thr" --seconds "$secs" --size $((1<<30)) --json \
          | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["iops"]))')
    echo "$thr $f $s" >>"$out"
    printf '%5s %3s %12s %12s %5s%%\n' "$r" "$thr" "$f" "$s" "$(python3 -c "print(round(100 * $s / max(1, $f)))")"
  done
done
echo
python3 - "$out" <<'PY'
import statistics, sys
pairs = {}
for line in open(sys.argv[1]):
    thr, f, s = (int(x) for x in line.split())
    pairs.setdefault(thr, []).append((f, s))
print(f"{'thr':>3} {'pairs':>5} {'fio median':>11} {'ours median':>11} {'median ratio':>12} {'ratio of sums':>13} {'pairs >= 80%':>12}")
for thr, v in sorted(pairs.items()):
    ratios = [s / f for f, s in v if f > 0]
    print(f"{thr:>3} {len(v):>5} {statistics.median(f for f, _ in v):>11.0f} "
          f"{statistics.median(s for _, s in v):>11.0f} {100 * statistics.median(ratios):>11.1f}% "
          f"{100 * sum(s for _, s in v) / max(1, sum(f for f, _ in v)):>12.1f}% "
          f"{sum(r >= 0.8 for r in ratios):>6}/{len(ratios)}")
PY

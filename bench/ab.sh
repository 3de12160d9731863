#!/usr/bin/env bash
# npm run bench:ab -- <base-commit> [crud|ingest] [pairs]   (docs/performance.md, "A/B against a parent")
#
# Alternating A/B of this checkout against a base commit, in the same session: the base is checked
# out once as a detached worktree beside this one (../perf-ab-<commit>, or BENCH_AB_DIR; node_modules linked to this
# checkout's), then `pairs` times (default 3) the base's bench and this checkout's bench run back to
# back at `nice -n 19`, each with its own results name. Ends with one line per pair (load average at
# the start of each run, the rate of each side and the ratio) and the median ratio, also written to
# bench/results/ab-<kind>-<base>.md. The same environment (BENCH_*) reaches both sides.
set -euo pipefail
base=${1:?usage: npm run bench:ab -- <base-commit> [crud|ingest] [pairs]}
kind=${2:-crud}
pairs=${3:-3}
case "$kind" in crud | ingest) ;; *) echo "kind must be crud or ingest" >&2; exit 2 ;; esac
here=$(pwd)
short=$(git rev-parse --short "$base")
dir=${BENCH_AB_DIR:-"$here/../perf-ab-$short"}
if [ ! -d "$dir" ]; then
  git worktree add --detach "$dir" "$base" >/dev/null
  ln -s "$(readlink -f "$here/node_modules")" "$dir/node_modules"
fi
summary=()
ratios=()
run() { # <side dir> <results name>: the rate of the run, from its JSON
  local side=$1 name=$2 load
  load=$(cut -d' ' -f1 /proc/loadavg)
  if [ "$kind" = crud ]; then
    (cd "$side" && BENCH_NAME=$name BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-16} nice -n 19 npm run bench:crud >"/tmp/$name.log" 2>&1)
    rate=$(node -e 'const r=require(process.argv[1]);const c=r.cells.find((c)=>c.concurrency===Number(process.argv[2]))??r.cells[0];console.log(c.mix.rps)' "$side/bench/results/$name.json" "${BENCH_CONCURRENCY:-16}")
  else
    (cd "$side" && BENCH_RESULTS_NAME=$name BENCH_SCALING_REPEATS=${BENCH_SCALING_REPEATS:-0} nice -n 19 npm run bench:ingest >"/tmp/$name.log" 2>&1)
    rate=$(node -e 'console.log(require(process.argv[1]).resourcesPerSecond)' "$side/bench/results/$name.json")
  fi
  echo "$load $rate"
}
for i in $(seq 1 "$pairs"); do
  read -r loadA rateA < <(run "$dir" "ab-$kind-$short-base-$i")
  read -r loadB rateB < <(run "$here" "ab-$kind-$short-head-$i")
  ratio=$(node -e 'console.log((Number(process.argv[2])/Number(process.argv[1])).toFixed(2))' "$rateA" "$rateB")
  ratios+=("$ratio")
  summary+=("| $i | $loadA / $loadB | $rateA | $rateB | $ratio |")
  echo "pair $i: base $rateA, head $rateB, ratio $ratio (load $loadA / $loadB)"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
{
  echo "# bench:$kind A/B: $(git rev-parse --short HEAD) against $short ($(date -u +%FT%TZ))"
  echo
  echo "| pair | load avg (1 min, start: base / head) | base $( [ "$kind" = crud ] && echo 'mix req/s' || echo 'res/s') | head | ratio |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${summary[@]}"
  echo
  echo "Median ratio: **$median** (pairs rerun when the load average is above 1.5 on 2 cores)."
} | tee "bench/results/ab-$kind-$short.md"

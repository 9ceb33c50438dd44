#!/usr/bin/env bash
# One-epoch trainings (12,000 images) inside a control group with a CPU quota of QUOTA cores, as in a
# container started with --cpus QUOTA or a Kubernetes pod with that CPU limit: pyrogen's default (the
# thread governor, which caps torch's count at the quota) against --threads N (torch's own count, one
# thread per CPU of the affinity), alternating, wall time and the epoch's time of each.
# Needs root (it makes the control group) and Linux cgroups (v2 or v1's cpu controller).
#
#   sudo bash benchmarks/cpu_quota.sh                  # QUOTA=1, N = the CPUs, 3 rounds
#   sudo QUOTA=2 ROUNDS=5 bash benchmarks/cpu_quota.sh
set -euo pipefail
cd "$(dirname "$0")/.."
quota=${QUOTA:-1}
rounds=${ROUNDS:-3}
threads=${THREADS:-$(nproc)}
python=${PYTHON:-.venv/bin/python}
name=pyrogen-quota-$$
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  group=/sys/fs/cgroup/$name
  mkdir "$group"
  echo "$((quota * 100000)) 100000" >"$group/cpu.max"
else
  group=/sys/fs/cgroup/cpu/$name
  mkdir "$group"
  echo 100000 >"$group/cpu.cfs_period_us"
  echo "$((quota * 100000))" >"$group/cpu.cfs_quota_us"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"; rmdir "$group" 2>/dev/null || true' EXIT
echo "CPU quota $quota core(s) on a machine of $(nproc) CPUs; default against --threads $threads, $rounds rounds"
echo "| round | run | wall s | epoch s |"
echo "|---|---|---|---|"
for round in $(seq "$rounds"); do
  for run in default "threads $threads"; do
    extra=()
    [ "$run" = default ] || extra=(--threads "$threads")
    rm -rf "$out/run"
    start=$(date +%s.%N)
    # the training joins the group from a shell of its own, so this script stays outside the quota
    bash -c "echo \$\$ > '$group/cgroup.procs' 2>/dev/null || echo \$\$ > '$group/tasks'; exec \"\$@\"" _ \
      env -u OMP_NUM_THREADS "$python" -m pyrogen train vae --out "$out/run" --epochs 1 --eval-samples 0 \
      --no-progress --device cpu --train-size 12000 "${extra[@]}" >"$out/log-${run// /-}" 2>&1
    end=$(date +%s.%N)
    epoch=$("$python" -c "import csv, sys; print(round(float(list(csv.DictReader(open(sys.argv[1])))[0]['seconds']), 2))" "$out/run/metrics.csv")
    echo "| $round | $run | $("$python" -c "print(round($end - $start, 2))") | $epoch |"
  done
done
grep -h "control group" "$out/log-default" || true  # the default's one line about the quota

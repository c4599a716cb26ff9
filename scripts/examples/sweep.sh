#!/usr/bin/env bash
# A parameter sweep, written the way a shell user writes one against a mounted grid:
# submit one job of N tasks (task i tries parameter i), wait for it, gather every
# task's result with a loop, print a summary.
#
#   scripts/examples/sweep.sh GRID [N]     (GRID: where the grid is mounted)
set -euo pipefail
grid=${1:?usage: sweep.sh GRID [N]}
n=${2:-50}

# The clone idiom: the job id comes back on the same descriptor, with no race.
exec 3<>"$grid/new"
cat >&3 <<JOB
cmd sh -c 'x=\$((STYXGRID_TASK * STYXGRID_TASK)); echo "param=\$STYXGRID_TASK result=\$x"'
tasks $n
submit
JOB
read -r job <&3
exec 3>&-
echo "sweep: job $job, $n tasks" >&2

read -r status < "$grid/jobs/$job/wait"        # blocks until every task is finished
case "$status" in
    *" done "*) ;;
    *) echo "sweep: job $job did not succeed: $status" >&2; exit 1 ;;
esac

best=-1 best_param=-1 total=0
for ((t = 0; t < n; t++)); do
    line=$(cat "$grid/jobs/$job/tasks/$t/stdout")
    result=${line##*result=}
    total=$((total + result))
    if ((result > best)); then best=$result best_param=$t; fi
done
echo "tasks=$n sum=$total best_param=$best_param best=$best"

#!/bin/sh
# A task that checkpoints itself: it counts to N (default 30), one step every
# 0.2 s, and keeps its counter in $STYXGRID_CHECKPOINT, which the grid restores
# wherever the task starts again.  It saves by writing a new file and renaming
# it into place, so that the folder always holds a whole checkpoint; SIGUSR1
# (checkpoint_every) and SIGTERM (its owner took the machine back) make it save
# at once, and SIGTERM makes it end.
#
#   printf 'cmd ./count.sh\nargs 50\ninput count.sh\ncheckpoint_every 5\nsubmit\n' > grid/new
n=${1:-30}
saved=$STYXGRID_CHECKPOINT/count
i=0
if [ -f "$saved" ]; then
    i=$(cat "$saved")
    echo "resumed at $i on $STYXGRID_NODE"
fi
save() { echo "$i" > "$saved.new" && mv "$saved.new" "$saved"; }
trap 'save' USR1
trap 'save; exit 143' TERM
while [ "$i" -lt "$n" ]; do
    sleep 0.2                   # a step of the work
    i=$((i + 1))
    save
done
echo "counted to $n on $STYXGRID_NODE"

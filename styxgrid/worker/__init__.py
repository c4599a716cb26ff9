"""The worker: dials out to the scheduler, advertises itself, pulls tasks by reading
/work, runs them and sends their output and exit status back."""

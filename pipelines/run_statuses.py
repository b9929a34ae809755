"""Which runs count as still going, for the sensor's and the schedule's 'is one already running?'."""

import dagster as dg

# Queued counts: under the QueuedRunCoordinator a requested run waits here before a worker starts it.
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

"""Job services, one module per concern; callers import the module they need.

- create: job_create (input checks, idempotency), job_create_from_file
- queue: job_enqueue, job_publish (the run message, on commit)
- execution: the worker's side: claim, heartbeat, progress, complete, fail, retry, kill
- actions: user and operator actions: cancel, retry, dead-letter replay, download links
- maintenance: retention_prune (jobs, objects, dead letters, task results in batches), uploads_abort_abandoned

None of them changes a job's state but through jobs.state_machine.job_transition.
"""

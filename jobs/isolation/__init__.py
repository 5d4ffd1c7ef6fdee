"""Each job's processor runs in a child process of its pool process, within limits.

Apache Tika's model: every parse runs in a process of its own with time and memory
limits, so a hostile input costs that process, never the worker. `sandbox` is the pool
process's side (start, reuse, watch, stop), `child` the processor's, `protocol` the pipe
between them, `results` what a result must be before it is stored.
"""

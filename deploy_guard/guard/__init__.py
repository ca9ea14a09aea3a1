"""The guard: on each host, discover the backup units, run the pre-flight checks, run every
stage, judge each run from systemd's own evidence and prove its artifact (`engine` drives it)."""

"""After the verdict: the JSON report, notifications, metrics, receipts, a host journal entry,
and the history of past runs; a failure here is a warning, never a verdict."""

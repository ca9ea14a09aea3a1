"""After the guard: the check of the deploy before it, the gate, the deploy tools, and the
verification of each deployed host; `hook` is the git pre-push side of the same gate."""

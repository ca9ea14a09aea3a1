"""Fixtures shared by the unit and integration tests."""

import signal

pytest_plugins = ["tests.http_receiver"]

# A suite started in the background of a non-interactive shell (`make test &`, nohup) has
# SIGINT ignored, and every process it starts inherits that: deploy-guard would then never
# see the Ctrl-C the interrupt tests send it. Handled signals are reset in a child, so this
# gives the children the default disposition back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

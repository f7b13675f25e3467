"""`[core] hostname_callable` of the cluster test's Celery workers: the worker's own name.

Both workers run on this one machine, so the default (the machine's FQDN) would record the same
`hostname` on every task instance. Each worker is started with LIENTHONG_WORKER_NAME set, as each
would have a host name of its own in a real deployment, and its tasks record that name.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("LIENTHONG_WORKER_NAME") or socket.getfqdn()

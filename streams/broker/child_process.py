"""Child processes that do not outlive the process that started them.

`metasup up` starts Tansu and the workers in sessions of their own, so that a Ctrl-C
in the terminal reaches `up` alone and it can stop them in order (workers first, the
broker last, after the durable log has copied everything). The price: when `up` itself
is killed (SIGKILL, an OOM kill, a closed CI job), nothing stopped them, and a Tansu
kept running, orphaned, holding its memory and port. On Linux the kernel can send a
child a signal when its parent dies (prctl PR_SET_PDEATHSIG); nothing is lost by it,
since the durable log, not Tansu, holds the data, and a worker never commits ahead of
what the broker acknowledged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1

# Loaded before any fork: the function that runs in the child must not load libraries.
_LIBC = (
    ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None
)


def dies_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child gets SIGKILL when the process
    that starts it dies. None where the platform cannot do it (the child then survives,
    as before)."""
    if _LIBC is None:
        return None
    parent = os.getpid()
    prctl = _LIBC.prctl

    def arrange() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request was made
            os._exit(1)

    return arrange

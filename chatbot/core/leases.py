"""Who is streaming a reply, and until when.

A reply being streamed is stored with status ``streaming``, the *holder* (the process streaming it:
``host:pid:random``) and a *lease* (a time, seconds since the epoch). The holder saves the partial text
every :data:`CHECKPOINT_SECONDS` and renews the lease with it (:mod:`chatbot.core.checkpoints`). A reply whose
lease has run out, or whose holder is a process of this host that is gone, will never be finished: any
process that reads it (a GET, the next turn of its conversation, a store opening the file) marks it
``interrupted``, keeping the text saved so far. A holder that finishes such a reply after all still stores
its final text (finishing always wins).

Leases compare the clocks of the processes sharing a store: keep them in sync (NTP); a skew of a few
seconds is covered by :data:`LEASE_SECONDS`.
"""

from __future__ import annotations

import os
import socket
import uuid

#: Seconds between two saves of a reply in progress (its partial text, and its lease renewed).
CHECKPOINT_SECONDS = 1.0
#: Seconds a lease runs: a reply whose holder has not renewed it for this long is taken as lost.
LEASE_SECONDS = 10.0
#: A lease is renewed at least this often even when no text arrived (a model thinking in silence).
RENEW_SECONDS = LEASE_SECONDS / 4


def new_holder() -> str:
    """A name for one store of this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def expired(holder: str | None, lease: float | None, now: float, me: str) -> bool:
    """Whether a reply stored as streaming by ``holder`` until ``lease`` will never be finished."""
    if holder is None or lease is None or lease < now:
        return True
    if holder == me:
        return False
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine's process: only its lease tells
    pid = int(pid_text)
    if pid == os.getpid():  # another store of this process (or an earlier process that had our pid)
        return True
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    return True

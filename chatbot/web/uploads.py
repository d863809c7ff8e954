"""Which attachments a visitor's session may have the app read.

Every path in an event comes from the browser, and the browser can name any path. Gradio's own checks
(see :func:`chatbot.compat.enforce_path_checks`) keep event inputs inside its upload folder; on top of
that, the app reads a file only when it lies in Gradio's upload folder AND this session may read it:

- the visitor uploaded it: Gradio's upload route wrote it (``uploaded``) and this session attached it
  first (a file re-uploaded since, by someone with the same bytes, may be attached by them too);
- or it is the attachment of a saved chat this session opened: the app sealed the path when it saved the
  chat (an HMAC with a server-side key the page never sees), so a store, history or imported chat that
  names a path the app did not seal is never followed.

Sessions are Gradio's ``session_hash`` (one per page load). Thread-safe; bounded (the least recently
used paths are forgotten first, and with them only the right to read them).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

#: Most paths remembered (about 200 bytes each plus the sessions that may read them).
MAX_PATHS = 100_000


def _resolved(path: object, root: str) -> str | None:
    """The absolute path of an existing file inside ``root``, or None."""
    if not isinstance(path, str) or not path or "\x00" in path:
        return None
    try:
        resolved = Path(path).resolve()
        resolved.relative_to(Path(root).resolve())
        return str(resolved) if resolved.is_file() else None
    except (ValueError, OSError):
        return None


def _stamp(path: str) -> tuple[int, int]:
    """What changes when Gradio's upload route writes the file again (it renames a new file into place)."""
    try:
        info = os.stat(path)
    except OSError:
        return (-1, -1)
    return (info.st_ino, info.st_mtime_ns)


class SessionFiles:
    """The files each session may have the app read (see the module's docstring)."""

    def __init__(self, root: Callable[[], str], key: bytes, uploaded: Callable[[str], bool] | None = None,
                 max_paths: int = MAX_PATHS) -> None:
        self.root = root  # Gradio's upload folder
        self.key = key  # seals saved chats' attachments
        self.uploaded = uploaded or (lambda path: False)  # whether Gradio's upload route wrote this path
        self.max_paths = max_paths
        self._readers: OrderedDict[str, tuple[set[str], tuple[int, int]]] = OrderedDict()
        self._lock = threading.Lock()

    def _grant(self, session: str, path: str, stamp: tuple[int, int]) -> None:
        readers, _ = self._readers.pop(path, (set(), stamp))
        readers.add(session)
        self._readers[path] = (readers, stamp)
        while len(self._readers) > self.max_paths:
            self._readers.popitem(last=False)

    def may_read(self, session: str | None, path: object) -> bool:
        """Whether ``session`` may have the app read ``path`` (an earlier attachment of its chat)."""
        resolved = _resolved(path, self.root())
        if not session or resolved is None:
            return False
        with self._lock:
            found = self._readers.get(resolved)
            if found is None or session not in found[0]:
                return False
            self._readers.move_to_end(resolved)
            return True

    def attach(self, session: str | None, path: object) -> bool:
        """A new message's file: whether ``session`` may have it read (and from now on may). True for a
        file it may already read, and for a file Gradio's upload route wrote that no other session
        attached first (or that was uploaded again since)."""
        resolved = _resolved(path, self.root())
        if not session or resolved is None:
            return False
        stamp = _stamp(resolved)
        with self._lock:
            found = self._readers.get(resolved)
            if found is not None and session in found[0]:
                self._readers.move_to_end(resolved)
                return True
            if not (self.uploaded(resolved) or (isinstance(path, str) and self.uploaded(path))):
                return False
            if found is not None and found[1] == stamp:  # someone else's upload, unchanged since
                return False
            self._grant(session, resolved, stamp)
            return True

    def seal(self, path: object) -> str | None:
        """The seal a saved chat keeps beside an attachment's path (None for a path outside the folder)."""
        resolved = _resolved(path, self.root())
        if resolved is None:
            return None
        return hmac.new(self.key, resolved.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def admit(self, session: str | None, path: object, seal: object) -> bool:
        """A saved chat's attachment: whether its ``seal`` is the app's for ``path`` (``session`` may then
        read it)."""
        expected = self.seal(path)
        if expected is None or not isinstance(seal, str) or not hmac.compare_digest(expected, seal):
            return False
        if session:
            resolved = _resolved(path, self.root())
            if resolved is not None:
                with self._lock:
                    self._grant(session, resolved, _stamp(resolved))
        return True

    def keeper(self, session: str | None, *, saving: bool = False) -> Callable[[str, object], str | None]:
        """For :mod:`chatbot.web.chats`: given an attachment's (path, seal), the seal to keep it with, or None
        to drop it. ``saving``: the conversation this session just had (sealed when it may read the file);
        otherwise a store from the browser (kept only with the app's seal)."""
        if saving:
            return lambda path, seal: self.seal(path) if self.may_read(session, path) else None
        return lambda path, seal: seal if self.admit(session, path, seal) else None  # type: ignore[return-value]

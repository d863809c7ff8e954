"""What the SQLite store keeps of a long conversation between turns: the messages that have ended (they
no longer change), so that a turn reads back only the newer ones."""

from __future__ import annotations

from collections import OrderedDict
from itertools import islice

from chatbot.core.store import Row

#: What :class:`EndedRows` keeps at most: conversations (the most recently continued) and characters of
#: message text in all of them.
ENDED_CONVERSATIONS = 256
ENDED_CHARS = 32_000_000


class EndedRows:
    """Per conversation, a run of stored messages with contiguous numbers that have all ended (no reply
    among them still streaming), so that a turn reads back from the database only the messages after them:
    with 2,000 turns stored, reading and decoding all of them cost 5-7 ms of CPU per turn.

    An ended message changes only when a reply that was still streaming when another process opened the
    file (which marks it interrupted) is finished after all: :meth:`covers` lets ``finish_turn`` drop the
    conversation then, and :meth:`check_version` drops everything when another connection has written
    to the file at all (``PRAGMA data_version``). Used under the store's lock only."""

    def __init__(self, max_conversations: int = ENDED_CONVERSATIONS, max_chars: int = ENDED_CHARS) -> None:
        self.max_conversations = max_conversations
        self.max_chars = max_chars
        self._rows: OrderedDict[str, tuple[list[Row], int]] = OrderedDict()  # rows, their characters
        self.chars = 0
        self._version: int | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def check_version(self, version: int) -> None:
        """``version`` is the connection's ``PRAGMA data_version`` in the current transaction."""
        if version != self._version:
            self._rows.clear()
            self.chars = 0
            self._version = version

    def known(self, conversation_id: str, first: int, before: int) -> list[Row] | None:
        """The kept rows numbered ``first`` and up (all of them below ``before``), or None when the kept
        run does not start at or before ``first``."""
        entry = self._rows.get(conversation_id)
        if entry is None:
            return None
        rows = entry[0]
        start = rows[0][0]
        if start > first or rows[-1][0] >= before:
            self.discard(conversation_id)
            return None
        self._rows.move_to_end(conversation_id)
        return rows[first - start:] if first > start else rows

    def keep(self, conversation_id: str, known: list[Row] | None, rows: list[Row]) -> None:
        """``known`` (what :meth:`known` gave) and then ``rows`` are the conversation's messages from some
        number on, in order: keep the ended run at their front."""
        entry = self._rows.pop(conversation_id, None)
        chars = 0
        if entry is not None:
            self.chars -= entry[1]
            if known:  # the kept run, less the messages that left the context window at its front
                kept = entry[0]
                chars = entry[1] - sum(len(row[2]) for row in islice(kept, len(kept) - len(known)))
        base = known[-1][0] + 1 if known else rows[0][0] if rows else 0
        end = 0
        for seq, _role, content, status in rows:
            if status == "streaming" or seq != base + end:
                break
            chars += len(content)
            end += 1
        ended = (known or []) + (rows if end == len(rows) else rows[:end])
        if not ended or chars > self.max_chars:
            return
        self._rows[conversation_id] = (ended, chars)
        self.chars += chars
        while len(self._rows) > self.max_conversations or self.chars > self.max_chars:
            _, (_, dropped) = self._rows.popitem(last=False)
            self.chars -= dropped

    def covers(self, conversation_id: str, seq: int) -> bool:
        entry = self._rows.get(conversation_id)
        return entry is not None and entry[0][0][0] <= seq <= entry[0][-1][0]

    def discard(self, conversation_id: str) -> None:
        entry = self._rows.pop(conversation_id, None)
        if entry is not None:
            self.chars -= entry[1]

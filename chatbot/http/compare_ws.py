"""``WS /compare/ws``: Compare over a WebSocket, where one column can be stopped while the others go on.

Send ``{"message", "models", "conversation_id"}`` as a text frame; receive the JSON events of
``POST /compare/stream`` (``start``, tagged column events, live and last ``stats``, ``summary``, ``done``). Send
``{"type": "stop", "column": 1}`` to stop one column (its upstream connection closes, the others stream on),
``{"type": "stop"}`` to stop them all. The gate, the origin check and the error frames are
:class:`chatbot.http.websocket.WebSocketChat`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from chatbot.core.limits import Visitor
from chatbot.http.compare_api import CompareRequest, CompareRun, batch_events, begin_compare
from chatbot.http.problems import ApiError
from chatbot.http.websocket import REFUSED, WebSocketChat

log = logging.getLogger("switchboard.api")


class WebSocketCompare(WebSocketChat):
    """One WebSocket connection of compares (one at a time)."""

    _run: CompareRun | None = None

    async def _handle(self, owner: str, visitor: Visitor, raw: str) -> None:
        if (data := await self._parsed(raw)) is REFUSED:
            return
        running = self._task is not None and not self._task.done() and self._run is not None
        if isinstance(data, dict) and data.get("type") == "stop":
            column = data.get("column")
            if running and self._run is not None:
                if isinstance(column, int) and not isinstance(column, bool):
                    self._run.comparison.stop(column)
                else:
                    self._run.comparison.stop_all()
            return
        if running:
            await self._error(ApiError.of(
                "busy", 'A compare is still streaming on this socket: wait for "done" or send {"type": "stop"}.'
            ))
            return
        run = await self._began(
            lambda: begin_compare(self.service, owner, CompareRequest.model_validate(data), visitor)
        )
        if run is None:
            return
        self._run = run
        self._task = asyncio.create_task(self._stream_compare(run))

    async def _stream_compare(self, run: CompareRun) -> None:
        columns = [{"column": c.index, "model": c.model} for c in run.comparison.columns]
        try:
            await self._send({"type": "start", "conversation_id": run.conversation_id, "columns": columns})
            async with contextlib.aclosing(run.comparison.batches()) as batches:
                async for batch in batches:
                    for payload in batch_events(run, batch):
                        await self._send(payload)
        except (WebSocketDisconnect, OSError) as exc:  # the columns are stopped and stored regardless
            log.info("websocket closed mid-compare: %r", exc)
            return
        except Exception:  # a bug: the columns are stored regardless, the operator gets the traceback
            log.exception("websocket compare failed")
            return
        finally:
            await run.comparison.release()
        saved = all(outcome in ("stored", "deleted") for outcome in run.stored)
        await self._send({"type": "done", "conversation_id": run.conversation_id, "saved": saved})

    async def _cancel(self, reason: str) -> None:
        task, run = self._task, self._run
        if task is None or task.done() or run is None:
            return
        run.comparison.stop_all()
        await asyncio.wait({task}, timeout=10.0)
        task.cancel()


async def compare_ws(websocket: WebSocket) -> None:
    state = websocket.app.state
    await WebSocketCompare(state.chat_service, state.api_gate, websocket).run()

"""What one chat-tab message costs the server: the page's steps for it, in as few requests as they fit.

A browser sends, for a message and its reply: the message taken and shown (ChatInterface's chain, already
three requests instead of eight: :func:`chatbot.compat_chat.shorten_submit_chain`), the saved-chats list's
change when it is sent (:meth:`ChatsPanel.started`), the turn saved while the reply streams (every
:data:`chatbot.web.cut_reply.SAVE_EVERY` seconds), the conversation kept on the server once it has ended
(ChatInterface's ``chatbot_state``), and after it the saved chat (:meth:`ChatsPanel.saved`) and the session
line. Each was a Gradio event of its own (12 requests per message, recorded from chromium:
docs/benchmarks/replicas.md, fourth session). Here (:func:`cheaper_message`):

- the list's change runs in the request that takes the message (it needs the message just taken);
- the streaming reply's own updates carry the saved turn (no timer, no request) and, at its end, the
  conversation into ``chatbot_state`` (no request copying back what the browser was just sent);
- the session line (and gauge) after a reply are worked out in the saved chat's request.

What the page shows, and when, is unchanged; each touch of Gradio is in :mod:`chatbot.compat_steps`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from chatbot.compat_chat import shorten_submit_chain
from chatbot.compat_steps import drop_after, extend_reply_steps, fold, reply_steps
from chatbot.web import cut_reply
from chatbot.web.chats_panel import ChatsPanel


def kept_conversation(chatbot: gr.Chatbot, shown: Any) -> Any:
    """What ``chatbot_state`` held once the browser sent back the chat it was shown (``shown``, as a reply
    step yields it): the chat's value after its round trip (postprocess, then preprocess)."""
    return chatbot.preprocess(chatbot.postprocess(shown))


def cheaper_message(demo: gr.Blocks, chat: gr.ChatInterface, panel: ChatsPanel, finished: gr.State) -> dict[str, int]:
    """Fold the page's steps for a message (see the module's doc). How many steps each change touched (those
    of :func:`shorten_submit_chain`, then ``folded``, ``in_reply`` and ``kept_in_reply``)."""
    counts = shorten_submit_chain(demo, chat)
    fns = list(demo.fns.values())
    box = chat.textbox
    take = next((f for f in fns if (box._id, "submit") in f.targets and chat.saved_input in f.outputs), None)
    started = next((f for f in fns if (box._id, "submit") in f.targets and f.fn == panel.started), None)
    counts["folded"] = 0
    if take is not None and started is not None:
        fold(take, started)  # the list's change reads the message take has just kept
        counts["folded"] += 1
    after = [f for f in fns if (finished._id, "change") in f.targets]
    saved = next((f for f in after if f.fn == panel.saved), None)
    for other in (f for f in after if saved is not None and f is not saved):
        fold(saved, other)
        counts["folded"] += 1
    replies = reply_steps(demo, chat)
    counts["kept_in_reply"] = 0
    copies = {chat.chatbot_state._id, chat.chatbot_value._id}
    for reply in replies:  # ChatInterface's copy of the shown chat into chatbot_state, after the reply
        for follower in [f for f in fns if f.trigger_after == reply._id and f.outputs
                         and [i._id for i in f.inputs] == [chat.chatbot._id] and {o._id for o in f.outputs} <= copies]:
            drop_after(demo, reply, follower)
            counts["kept_in_reply"] += 1

    async def along(updates: AsyncIterator[tuple], values: list[Any], request: gr.Request) -> AsyncIterator[tuple]:
        raw, chat_id = values
        update: tuple | None = None
        kept = False
        async for update, store in panel.saver.along(updates, raw, chat_id, request):
            ends = cut_reply.ends_turn(update)
            state = await asyncio.to_thread(kept_conversation, chat.chatbot, update[1]) if ends else gr.skip()
            kept = kept or ends
            yield (*update, state, store)
        if update is not None and not kept:  # a reply that never said it ended: the chat as shown, still kept
            yield (*update, await asyncio.to_thread(kept_conversation, chat.chatbot, update[1]), store)

    counts["in_reply"] = extend_reply_steps(demo, chat, [panel.store, panel.shown], [chat.chatbot_state, panel.store],
                                            along)
    return counts

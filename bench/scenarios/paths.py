"""The paths the benchmark measures (a front end and how a visitor reaches it), by key: their labels in
results.md, and the prefix of the same paths on a --before checkout."""

from __future__ import annotations

LABELS = {
    "sdk": "Upstream floor (the fake's stream read straight, raw, as every path is read; no front end)",
    "sw_ui": "Switchboard: chat UI (browser submit chain)",
    "sw_api": "Switchboard: Gradio API /chat",
    "sw_http": "Switchboard: HTTP API /chat/stream",
    "lc_ui": "gr.load_chat: chat UI (browser submit chain)",
    "lc_api": "gr.load_chat: Gradio API",
    "lu_ui": "gr.load_chat with default_concurrency_limit=None and 512 threads: chat UI (browser submit chain)",
    "gf_ui": "Gradio floor: a bare gr.ChatInterface streaming from the fake (browser submit chain)",
}
SHORT = {"sdk": "Upstream floor", "sw_ui": "Switchboard UI", "sw_api": "Switchboard /chat",
         "sw_http": "Switchboard HTTP", "lc_ui": "load_chat UI", "lc_api": "load_chat API",
         "lu_ui": "load_chat unlimited UI", "gf_ui": "Gradio floor UI",
         "sw_ui_grace2": "Switchboard UI, 2 s grace"}  # the last: the memory scenario's short-grace run
BEFORE = "before_"  # key prefix of the paths on the --before checkout's Switchboard ("before_sw_http", ...)
for _k in ("sw_ui", "sw_api", "sw_http", "sw_ui_grace2"):
    SHORT[BEFORE + _k] = f"Before: {SHORT[_k]}"
    if _k in LABELS:
        LABELS[BEFORE + _k] = f"the same path on the --before checkout's Switchboard ({LABELS[_k]})"

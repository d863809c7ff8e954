"""The page's own stylesheet for accessibility: contrast, headings and names Gradio 6 leaves short.

axe-core (tests/test_browser_a11y.py) finds no critical or serious violation on the page, before and after a
reply, in English, Spanish and Portuguese, in light and dark mode. What this CSS fixes (WCAG AA: 4.5:1 for
text):
- the header's ``h1`` keeps the size the ``h2`` had;
- TODO

Gradio's own markup that needs more than CSS is changed in :mod:`chatbot.compat` (each touch tested there).
"""

from __future__ import annotations

A11Y_CSS = """
/* ---- accessibility (chatbot/web/a11y.py) ---- */
.prose h1:first-child { font-size: var(--text-xxl); }
/* the name and size of each file waiting to be sent (named by chatbot.compat.MESSAGE_BOX_JS) */
#message .thumbnail-wrapper { display: inline-flex; flex-direction: column; align-items: center; max-width: 9rem; }
#message .thumbnail-wrapper .pending-file {
  font-size: var(--text-sm); color: var(--body-text-color); max-width: 9rem;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}
/* ---- end accessibility ---- */
"""


def page_css() -> str:
    """The page's custom CSS (Gradio's ``css``)."""
    return A11Y_CSS

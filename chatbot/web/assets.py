"""The page's own CSS and script (the first screen, notices, the message box's keys, the chosen language),
passed to Gradio's ``launch`` / ``mount_gradio_app`` as ``css`` and ``head`` (see app.presented).

Contracts the script keeps, each checked by tests/test_browser_first_screen.py:
- on a narrow screen (a phone) the saved-chats sidebar starts closed; the message box takes the focus
  without scrolling the page (the title, the banner, the model picker and the gauge stay in view);
- Enter (or Send) on an empty box sends nothing; Enter while a reply streams sends nothing (the box stays
  usable, so the focus stays in it); Escape stops a reply;
- every request the page makes to its own server carries the language chosen in Gradio's Settings as its
  ``Accept-Language``, and choosing another language re-renders the server-written text (``#sb-relang``);
- a chat notice whose title starts with ⚠ is shown as a warning (class ``sb-warning``), the cost line (a
  title that starts with the model in ``code``) as a light one-line note (class ``sb-cost``);
- Gradio's developer items (the PWA hint, Screen Studio) are not shown in a visitor's Settings.

Other CSS goes in blocks of its own after :data:`CSS` (see :func:`css`).
"""

from __future__ import annotations

from chatbot.web.a11y import page_css

#: Our CSS (one block; others append theirs, see css()).
CSS = """
/* --- switchboard: first screen, notices, settings (issue 15: 1, 5, 6, 11) --- */
.banner-wrap:has(> .record-button), .banner-wrap:has(+ .banner-wrap > .record-button) { display: none !important; }
#sb-relang { display: none !important; }
#demo-banner blockquote { margin: 0; padding: 4px 10px; font-size: 0.9em; }
#demo-banner p { margin: 0; }
#sb-header h2 { margin: 0; }
#sb-header p { margin: 0; }
#chatbot .thought-group.sb-warning {
  border: 1px solid #b45309; border-left-width: 5px; border-radius: 6px;
  background: #fffbeb; color: #78350f; padding: 2px 8px;
}
.dark #chatbot .thought-group.sb-warning { background: #3b2a0a; color: #fde68a; border-color: #f59e0b; }
#chatbot .thought-group.sb-warning .arrow { display: none; }
#chatbot .thought-group.sb-cost { font-size: 0.8em; }
#chatbot .thought-group.sb-cost p { margin: 0; }
#sb-controls { align-items: flex-start; }
#sb-controls #gauge { align-self: center; }
/* --- end switchboard: first screen --- */
"""

#: Our script, in the page's head (runs before Gradio mounts; waits for the elements it needs).
SCRIPT = r"""
<script>
(() => {
  if (window.__switchboard) return;
  window.__switchboard = true;
  const q = (s) => document.querySelector(s);
  const box = () => q('#message textarea');
  const stopButton = () => q('#message .stop-button');
  const hasFiles = () => !!document.querySelector('#message .thumbnail-item, #message .thumbnails img');
  const blank = () => { const t = box(); return !!t && !t.value.trim() && !hasFiles(); };

  // Enter: nothing on an empty box or while a reply streams. Escape: stop the reply.
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      const stop = stopButton();
      if (stop) { e.preventDefault(); stop.click(); }
      return;
    }
    const t = box();
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && t && e.target === t && (blank() || stopButton())) {
      e.preventDefault(); e.stopImmediatePropagation();
    }
  }, true);
  document.addEventListener('click', (e) => {
    const send = e.target instanceof Element && e.target.closest('#message .submit-button');
    if (send && blank()) { e.preventDefault(); e.stopImmediatePropagation(); }
  }, true);

  // The language chosen in Gradio's Settings (the page's lang) goes to the server with every request.
  const chosen = () => document.documentElement.getAttribute('lang') || '';
  const ownFetch = window.fetch.bind(window);
  window.fetch = (input, init) => {
    try {
      const lang = chosen();
      const url = new URL(input instanceof Request ? input.url : String(input), location.href);
      if (lang && url.origin === location.origin) {
        const headers = new Headers((init && init.headers) || (input instanceof Request ? input.headers : undefined));
        headers.set('Accept-Language', lang + ', *;q=0.1');
        init = Object.assign({}, init, { headers });
      }
    } catch (err) { /* never in the way of a request */ }
    return ownFetch(input, init);
  };

  // Notices: a warning, a light cost line.
  const mark = () => {
    for (const group of document.querySelectorAll('#chatbot .thought-group:not(.sb-seen)')) {
      const title = group.querySelector('[role="button"]');
      if (!title) continue;
      const text = (title.textContent || '').trim();
      if (!text) continue;
      group.classList.add('sb-seen');
      if (text.startsWith('\u26a0')) { group.classList.add('sb-warning'); group.setAttribute('role', 'alert'); }
      else if (title.querySelector('code')) group.classList.add('sb-cost');
    }
  };

  let lastLang = null, started = false, sidebarUntil = 0;
  // A phone starts with the chat, not the saved chats: the open sidebar is closed once, while the page loads.
  const closeSidebar = () => {
    if (!sidebarUntil || Date.now() > sidebarUntil) return;
    const toggle = q('.sidebar.open .toggle-button');
    if (toggle) { sidebarUntil = 0; toggle.click(); }
  };
  const start = () => {
    const t = box();
    if (!t) return false;
    started = true;
    if (window.matchMedia('(max-width: 768px)').matches) {
      sidebarUntil = Date.now() + 5000;
      const timer = setInterval(() => {
        closeSidebar();
        if (!sidebarUntil || Date.now() > sidebarUntil) clearInterval(timer);
      }, 150);
    }
    t.focus({ preventScroll: true });
    window.scrollTo(0, 0);
    lastLang = chosen();
    return true;
  };
  let pending = false;
  const observer = new MutationObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      if (!started) start();
      closeSidebar();
      mark();
      const lang = chosen();
      if (started && lastLang !== null && lang && lang !== lastLang) {
        lastLang = lang;
        const relang = q('#sb-relang');
        if (relang) relang.click();
      }
    });
  });
  observer.observe(document.documentElement, {
    subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['lang'],
  });
})();
</script>
"""


def css() -> str:
    """The page's CSS: ours, then any other block (each one self-contained): accessibility's."""
    return CSS + "\n" + page_css()


def head() -> str:
    """What goes into the page's ``<head>``."""
    return SCRIPT

"""Files waiting to be sent: what the message box shows of each, and which files it takes at all.

Gradio 6's MultimodalTextbox shows a waiting file as a bare thumbnail (a generic icon for a text file)
with an unnamed "Remove file" button. A browser-only listener on the box's ``change`` (no request to the
server) names each thumbnail: the file's name and size under it, as its accessible name, and in its
remove button's ("Remove notes.txt"), in the page's language.

The box takes only the types the app reads (:data:`chatbot.core.attachments.FILE_TYPES`: its file picker
offers only those; a dropped file of another type is refused at once, saying which types it takes), and a
file over ``max_file_size`` (``CHATBOT_MAX_UPLOAD_MB``) is refused before it is uploaded: both with
Gradio's own message, before anything is sent.
"""

from __future__ import annotations

import gradio as gr

#: Runs in the browser on each change of the box's value (``value.files``: Gradio's FileData, with
#: ``orig_name`` and ``size`` for a file picked in this page). Repaints after Gradio has drawn the list.
PENDING_FILES_JS = """
(value) => {
  const files = (value && value.files) || [];
  const lang = (document.documentElement.lang || navigator.language || "en").slice(0, 2).toLowerCase();
  const remove = {es: "Quitar", pt: "Remover"}[lang] || "Remove";
  const number = new Intl.NumberFormat(lang, {maximumFractionDigits: 1});
  const size = (n) => typeof n !== "number" ? "" : n < 1048576
    ? `${number.format(Math.max(1, Math.round(n / 1024)))} KB` : `${number.format(n / 1048576)} MB`;
  const paint = () => {
    document.querySelectorAll("#message .thumbnail-wrapper").forEach((item, i) => {
      const file = files[i];
      if (!file) return;
      const name = file.orig_name || String(file.path || "").split("/").pop() || "file";
      const shown = size(file.size) ? `${name} · ${size(file.size)}` : name;
      let caption = item.querySelector(".pending-file");
      if (!caption) {
        caption = document.createElement("span");
        caption.className = "pending-file";
        item.append(caption);
      }
      caption.textContent = shown;
      item.setAttribute("aria-label", shown);
      item.title = shown;
      const button = item.querySelector(".delete-button");
      if (button) button.setAttribute("aria-label", `${remove} ${name}`);
    });
  };
  requestAnimationFrame(() => requestAnimationFrame(paint));
  setTimeout(paint, 250);
  return [];
}
"""

#: How the names look: under each thumbnail, one line, cut with an ellipsis (the full name is its title).
PENDING_FILES_CSS = """
#message .thumbnail-wrapper { display: inline-flex; flex-direction: column; align-items: center; max-width: 9rem; }
#message .thumbnail-wrapper .pending-file {
  font-size: var(--text-sm); color: var(--body-text-color); max-width: 9rem;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}
"""


def name_pending_files(textbox: gr.MultimodalTextbox) -> None:
    """Wire the browser-only listener that names the files waiting in ``textbox``."""
    textbox.change(None, textbox, None, js=PENDING_FILES_JS, queue=False, show_progress="hidden",
                   api_visibility="private")

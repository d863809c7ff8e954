"""The page's look for accessibility: Gradio's default theme with text that reads at WCAG AA contrast
(4.5:1), in light and dark mode, and the CSS for what the theme has no option for.

axe-core (tests/test_browser_a11y.py) finds no critical or serious violation on the page, before and after a
reply, in English, Spanish and Portuguese, light and dark. Gradio 6.31's default theme fails it with white text
on orange-500 primary buttons (New chat, 2.8:1) and on red-500 "stop" buttons (Delete, 3.76:1), and
gray-400 hints; the theme below darkens those. The message box's and waiting files' names are set by
:func:`chatbot.compat.name_message_box` (Gradio renders them unnamed).
"""

from __future__ import annotations

import gradio as gr

A11Y_CSS = """
/* ---- accessibility (chatbot/web/a11y.py) ---- */
/* the header's title is the page's h1, at the size its h2 had */
.prose h1:first-child { font-size: var(--text-xxl); }
/* the name and size of each file waiting to be sent (named by chatbot.compat.MESSAGE_BOX_JS) */
#message .thumbnail-wrapper {
  display: inline-flex; flex-direction: column; align-items: center; gap: 2px; max-width: 9rem; margin-right: 6px;
}
#message .thumbnail-wrapper .pending-file {
  font-size: var(--text-sm); color: var(--body-text-color); max-width: 9rem;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}
/* each waiting file's remove button always shows, as a badge (Gradio shows it on hover only, and
   covers the whole thumbnail with it), inside its top right corner */
#message .thumbnail-item .delete-button {
  opacity: 1; inset: auto; top: 2px; right: 2px; width: 20px; height: 20px; border-radius: 50%;
  background: rgba(0, 0, 0, 0.8);
}
#message .thumbnail-item .delete-button svg { width: 14px; height: 14px; }
#message .thumbnail-item .delete-button:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 1px; }
/* ---- end accessibility ---- */
"""


#: Text the page's own script writes (see :func:`chatbot.compat.name_unnamed_controls`): a waiting file's
#: remove button ("Remove notes.txt"), and what replaces Gradio's English message for a file it refused.
BROWSER_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "remove": "Remove",
        "refused_type": "{names}: this type of file cannot be attached. Attach images (PNG, JPEG, WebP, GIF) or "
        "text files.",
        "refused_size": "{names}: larger than {limit}, the largest file you can attach.",
    },
    "es": {
        "remove": "Quitar",
        "refused_type": "{names}: no se puede adjuntar este tipo de archivo. Adjunta imágenes (PNG, JPEG, WebP, "
        "GIF) o archivos de texto.",
        "refused_size": "{names}: supera {limit}, el tamaño máximo de un archivo adjunto.",
    },
    "pt": {
        "remove": "Remover",
        "refused_type": "{names}: este tipo de arquivo não pode ser anexado. Anexe imagens (PNG, JPEG, WebP, GIF) "
        "ou arquivos de texto.",
        "refused_size": "{names}: passa de {limit}, o tamanho máximo de um anexo.",
    },
}


def page_theme() -> gr.themes.Base:
    """Gradio's default theme, its white-on-colour buttons and subdued text darkened to 4.5:1 or more."""
    return gr.themes.Default().set(
        button_primary_background_fill="*primary_700",  # white on orange-700: 5.2:1
        button_primary_background_fill_dark="*primary_700",
        button_primary_background_fill_hover="*primary_800",
        button_primary_background_fill_hover_dark="*primary_800",
        button_cancel_background_fill="#b91c1c",  # white on red-700: 6.5:1
        button_cancel_background_fill_hover="#991b1b",
        body_text_color_subdued="*neutral_600",  # on white 7.6:1, on neutral-100 7:1
        body_text_color_subdued_dark="*neutral_400",
    )


def page_css() -> str:
    """The page's custom CSS (Gradio's ``css``)."""
    return A11Y_CSS

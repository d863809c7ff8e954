"""The interface's fixed labels, in the three languages, handed to Gradio's ``gr.I18n`` so the browser
translates them (server-written text is the core's :mod:`chatbot.core.i18n`)."""

from __future__ import annotations

from typing import Any

from chatbot.core.i18n import DEFAULT_LANGUAGE, LANGUAGES, TEXTS

UI: dict[str, dict[str, str]] = {
    "en": {
        "header": "# Switchboard\nOne chat for every model behind your OpenAI-compatible API.",
        "demo_banner": "> **Demo mode**: no API key is configured, so replies come from a built-in offline "
        "simulator. To talk to real models, set `OPENAI_API_KEY` (or `LEMONDATA_API_KEY`, "
        "`OPENROUTER_API_KEY`, …) in the environment or in a `.env` file and restart; see README.md.",
        "demo_banner_public": "> **Demo mode**: replies come from a built-in offline simulator; no real model is "
        "called and nothing is charged.",
        "model": "Model",
        "model_info": "Type to search; configured aliases first, then every model the provider lists.",
        "chat": "Chat",
        "placeholder": "Type a message, or attach images and text files…",
        "conversations": "Conversations",
        "saved_chats": "Saved chats",
        "new_chat": "New chat",
        "title": "Title",
        "rename": "Rename",
        "delete": "Delete",
        "export_markdown": "Export Markdown",
        "export_json": "Export JSON",
        "import_json": "Import JSON",
        "saved_note": "Chats are kept in this browser only.",
        "user_key": "Your API key",
        "user_key_label": "Your API key (optional)",
        "user_key_info": "Used for your requests only, in this browser tab; never stored or shown again.",
        "welcome": "### Welcome\nAsk anything, or start from an example below. Pick the model under the message box.",
        "message_label": "Message",
        "common.complete": "Complete",
        "common.error": "Error",
    },
    "es": {
        "header": "# Switchboard\nUn chat para todos los modelos detrás de tu API compatible con OpenAI.",
        "demo_banner": "> **Modo demo**: no hay ninguna clave API configurada, así que las respuestas vienen de "
        "un simulador integrado sin conexión. Para hablar con modelos reales, define `OPENAI_API_KEY` (o "
        "`LEMONDATA_API_KEY`, `OPENROUTER_API_KEY`, …) en el entorno o en un archivo `.env` y reinicia; "
        "consulta README.md.",
        "demo_banner_public": "> **Modo demo**: las respuestas vienen de un simulador integrado sin conexión; no se "
        "llama a ningún modelo real y no se cobra nada.",
        "model": "Modelo",
        "model_info": "Escribe para buscar; primero los alias configurados, luego todos los modelos del proveedor.",
        "chat": "Chat",
        "placeholder": "Escribe un mensaje o adjunta imágenes y archivos de texto…",
        "conversations": "Conversaciones",
        "saved_chats": "Chats guardados",
        "new_chat": "Nuevo chat",
        "title": "Título",
        "rename": "Renombrar",
        "delete": "Eliminar",
        "export_markdown": "Exportar Markdown",
        "export_json": "Exportar JSON",
        "import_json": "Importar JSON",
        "saved_note": "Los chats se guardan solo en este navegador.",
        "user_key": "Tu clave API",
        "user_key_label": "Tu clave API (opcional)",
        "user_key_info": "Se usa solo para tus solicitudes, en esta pestaña; nunca se guarda ni se vuelve a mostrar.",
        "welcome": "### Te damos la bienvenida\nPregunta lo que quieras o empieza con un ejemplo. Elige el modelo "
        "debajo del cuadro de mensaje.",
        "message_label": "Mensaje",
        "common.complete": "Completado",
        "common.error": "Error",
    },
    "pt": {
        "header": "# Switchboard\nUm chat para todos os modelos por trás da sua API compatível com OpenAI.",
        "demo_banner": "> **Modo demo**: nenhuma chave de API está configurada, então as respostas vêm de um "
        "simulador embutido que funciona offline. Para conversar com modelos reais, defina `OPENAI_API_KEY` "
        "(ou `LEMONDATA_API_KEY`, `OPENROUTER_API_KEY`, …) no ambiente ou em um arquivo `.env` e reinicie; "
        "veja o README.md.",
        "demo_banner_public": "> **Modo demo**: as respostas vêm de um simulador embutido que funciona offline; nenhum "
        "modelo real é chamado e nada é cobrado.",
        "model": "Modelo",
        "model_info": "Digite para buscar; primeiro os apelidos configurados, depois todos os modelos do provedor.",
        "chat": "Chat",
        "placeholder": "Digite uma mensagem ou anexe imagens e arquivos de texto…",
        "conversations": "Conversas",
        "saved_chats": "Chats salvos",
        "new_chat": "Novo chat",
        "title": "Título",
        "rename": "Renomear",
        "delete": "Excluir",
        "export_markdown": "Exportar Markdown",
        "export_json": "Exportar JSON",
        "import_json": "Importar JSON",
        "saved_note": "Os chats ficam salvos apenas neste navegador.",
        "user_key": "Sua chave de API",
        "user_key_label": "Sua chave de API (opcional)",
        "user_key_info": "Usada só para as suas solicitações, nesta aba; nunca é guardada nem mostrada de novo.",
        "welcome": "### Boas-vindas\nPergunte o que quiser ou comece com um exemplo. Escolha o modelo abaixo da "
        "caixa de mensagem.",
        "message_label": "Mensagem",
        "common.complete": "Concluído",
        "common.error": "Erro",
    },
}

#: The example prompts of an empty chat (the server sends them in the visitor's language; a click puts one in
#: the message box).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "en": ("Explain this like I'm new to it: how do vaccines work?",
           "Write a short, friendly email declining a meeting.",
           "Give me three dinner ideas with what's usually in a fridge."),
    "es": ("Explícamelo como si fuera nuevo en el tema: ¿cómo funcionan las vacunas?",
           "Escribe un correo breve y amable para rechazar una reunión.",
           "Dame tres ideas de cena con lo que suele haber en una nevera."),
    "pt": ("Explique como se eu fosse iniciante: como funcionam as vacinas?",
           "Escreva um e-mail curto e gentil recusando uma reunião.",
           "Me dê três ideias de jantar com o que costuma ter na geladeira."),
}

# The session line before any reply is shown by the browser (as a label), after that by the server.
for _lang in LANGUAGES:
    UI[_lang]["session_empty"] = TEXTS[_lang]["session_empty"]


def gradio_i18n() -> Any:
    """A ``gr.I18n`` with :data:`UI` (pass it to ``launch`` / ``mount_gradio_app``)."""
    import gradio as gr

    return gr.I18n(**{lang: dict(strings) for lang, strings in UI.items()})


def ui(key: str) -> Any:
    """A label the browser translates (a ``gr.I18n`` key); raises KeyError for a key not in :data:`UI`."""
    UI[DEFAULT_LANGUAGE][key]  # noqa: B018 - fail early on a typo
    from gradio.i18n import I18nData

    return I18nData(key)

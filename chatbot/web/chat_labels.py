"""The chat list's and the chat settings' words, in the three languages: labels the browser translates
(merged into :data:`chatbot.web.labels.UI`) and texts the server writes (merged into
:data:`chatbot.core.i18n.TEXTS`), kept here so those tables stay the other faces' own. Importing this
module merges them; :mod:`chatbot.web.chats_panel` and :mod:`chatbot.web.chat_settings` import it."""

from __future__ import annotations

from chatbot.core.i18n import TEXTS
from chatbot.web.labels import UI

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "search_chats": "Search chats",
        "no_chats_yet": "No saved chats yet.",
        "chats_today": "Today",
        "chats_week": "Previous 7 days",
        "chats_older": "Older",
        "restore_chat": "↶ Undo: bring the chat back",
        "chat_settings": "Chat settings",
        "preset": "Preset",
        "preset_default": "Default",
        "preset_concise": "Concise",
        "preset_teacher": "Explain step by step",
        "preset_coder": "Code helper",
        "preset_translator": "Translator",
        "system_prompt": "System prompt",
        "system_info": "Instructions for this chat. Empty: the app's default.",
        "temperature": "Temperature",
        "temperature_info": "0 to 2: lower is more focused, higher more varied. Empty: the model's default.",
        "reply_length": "Reply length (tokens)",
        "reply_length_info": "Most tokens per reply. Empty: the most this app allows.",
        "settings_fixed": "This app's operator has fixed these settings.",
    },
    "es": {
        "search_chats": "Buscar chats",
        "no_chats_yet": "Todavía no hay chats guardados.",
        "chats_today": "Hoy",
        "chats_week": "Últimos 7 días",
        "chats_older": "Anteriores",
        "restore_chat": "↶ Deshacer: recuperar el chat",
        "chat_settings": "Ajustes del chat",
        "preset": "Predefinido",
        "preset_default": "Predeterminado",
        "preset_concise": "Conciso",
        "preset_teacher": "Explicar paso a paso",
        "preset_coder": "Ayudante de código",
        "preset_translator": "Traductor",
        "system_prompt": "Prompt del sistema",
        "system_info": "Instrucciones para este chat. Vacío: el predeterminado de la aplicación.",
        "temperature": "Temperatura",
        "temperature_info": "De 0 a 2: más baja, más precisa; más alta, más variada. Vacío: la del modelo.",
        "reply_length": "Longitud de la respuesta (tokens)",
        "reply_length_info": "Máximo de tokens por respuesta. Vacío: el máximo que permite la aplicación.",
        "settings_fixed": "El operador de esta aplicación ha fijado estos ajustes.",
    },
    "pt": {
        "search_chats": "Buscar chats",
        "no_chats_yet": "Ainda não há chats salvos.",
        "chats_today": "Hoje",
        "chats_week": "Últimos 7 dias",
        "chats_older": "Mais antigos",
        "restore_chat": "↶ Desfazer: trazer o chat de volta",
        "chat_settings": "Configurações do chat",
        "preset": "Predefinição",
        "preset_default": "Padrão",
        "preset_concise": "Conciso",
        "preset_teacher": "Explicar passo a passo",
        "preset_coder": "Assistente de código",
        "preset_translator": "Tradutor",
        "system_prompt": "Prompt do sistema",
        "system_info": "Instruções para este chat. Vazio: o padrão do aplicativo.",
        "temperature": "Temperatura",
        "temperature_info": "De 0 a 2: mais baixa, mais focada; mais alta, mais variada. Vazio: a do modelo.",
        "reply_length": "Tamanho da resposta (tokens)",
        "reply_length_info": "Máximo de tokens por resposta. Vazio: o máximo que o aplicativo permite.",
        "settings_fixed": "O operador deste aplicativo fixou estas configurações.",
    },
}

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "previous_answer": "↺ Previous answer",
        "reply_cut": "The server answering this message stopped before the reply ended (anything that had arrived "
        "is kept above). Send your message again to go on.",
        "prompt_concise": "Answer briefly and directly, in a few sentences at most.",
        "prompt_teacher": "You are a patient teacher. Explain step by step, with a simple example.",
        "prompt_coder": "You are an expert programmer. Answer with working code and a short explanation.",
        "prompt_translator": "Translate the user's messages into English; if they are in English, into Spanish. "
        "Reply with the translation only.",
    },
    "es": {
        "previous_answer": "↺ Respuesta anterior",
        "reply_cut": "El servidor que respondía a este mensaje se detuvo antes de terminar la respuesta (lo que "
        "había llegado se conserva arriba). Envía tu mensaje de nuevo para continuar.",
        "prompt_concise": "Responde de forma breve y directa, en pocas frases como mucho.",
        "prompt_teacher": "Eres un profesor paciente. Explica paso a paso, con un ejemplo sencillo.",
        "prompt_coder": "Eres un programador experto. Responde con código que funcione y una breve explicación.",
        "prompt_translator": "Traduce los mensajes del usuario al español; si están en español, al inglés. "
        "Responde solo con la traducción.",
    },
    "pt": {
        "previous_answer": "↺ Resposta anterior",
        "reply_cut": "O servidor que respondia a esta mensagem parou antes de terminar a resposta (o que já "
        "tinha chegado está guardado acima). Envie sua mensagem de novo para continuar.",
        "prompt_concise": "Responda de forma breve e direta, em poucas frases no máximo.",
        "prompt_teacher": "Você é um professor paciente. Explique passo a passo, com um exemplo simples.",
        "prompt_coder": "Você é um programador experiente. Responda com código que funcione e uma breve explicação.",
        "prompt_translator": "Traduza as mensagens do usuário para o português; se estiverem em português, "
        "para o inglês. Responda só com a tradução.",
    },
}

for _lang, _labels in LABELS.items():
    UI[_lang].update(_labels)
    TEXTS[_lang].update(TEXT[_lang])

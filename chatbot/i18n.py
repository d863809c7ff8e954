"""Languages: English (the default), Spanish and Portuguese (Brazilian), chosen from the browser's language.

Two kinds of text live here:

- :data:`UI`: the interface's fixed labels, handed to ``gr.I18n`` (see :func:`gradio_i18n`) so the browser
  translates them itself from ``navigator.language``;
- :data:`TEXTS`: what the server writes into the chat and the side panels as a reply streams (the thinking
  block's title, the cost line, the session total, the context gauge, the saved-chat messages), rendered
  with :func:`text` in the language of the visitor's ``Accept-Language`` (:func:`pick_language`).

The friendly error messages have their English in :mod:`chatbot.errors` and their translations in
:data:`ERRORS` here. No Gradio import at module level: :mod:`chatbot.errors` stays pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

LANGUAGES: tuple[str, ...] = ("en", "es", "pt")
DEFAULT_LANGUAGE = "en"

_TAG_RE = re.compile(r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$")


def pick_language(accept_language: str | None) -> str:
    """The best of :data:`LANGUAGES` for an ``Accept-Language`` header (English when none fits)."""
    if not isinstance(accept_language, str) or not accept_language.strip():
        return DEFAULT_LANGUAGE
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for position, item in enumerate(accept_language[:512].split(",")[:32]):
        match = _TAG_RE.match(item)
        if not match:
            continue
        primary = match.group(1).lower()
        try:
            q = float(match.group(2)) if match.group(2) is not None else 1.0
        except ValueError:
            continue
        q -= position * 1e-6  # equal weights: the earlier tag wins
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
        elif primary == "*" and q > best_q:
            best, best_q = DEFAULT_LANGUAGE, q
    return best


def language_of(request: object) -> str:
    """The visitor's language from a ``gr.Request`` (or anything with ``headers``); English without one."""
    headers = getattr(request, "headers", None)
    try:
        value = headers.get("accept-language") if headers is not None else None
    except Exception:
        value = None
    return pick_language(value)


# --- the interface's fixed labels (translated by the browser) -----------------------------------------

UI: dict[str, dict[str, str]] = {
    "en": {
        "header": "## Switchboard\nOne chat for every model behind your OpenAI-compatible API.",
        "demo_banner": "> **Demo mode**: no API key is configured, so replies come from a built-in offline "
        "simulator. To talk to real models, set `OPENAI_API_KEY` (or `LEMONDATA_API_KEY`, "
        "`OPENROUTER_API_KEY`, …) in the environment or in a `.env` file and restart; see README.md.",
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
    },
    "es": {
        "header": "## Switchboard\nUn chat para todos los modelos detrás de tu API compatible con OpenAI.",
        "demo_banner": "> **Modo demo**: no hay ninguna clave API configurada, así que las respuestas vienen de "
        "un simulador integrado sin conexión. Para hablar con modelos reales, define `OPENAI_API_KEY` (o "
        "`LEMONDATA_API_KEY`, `OPENROUTER_API_KEY`, …) en el entorno o en un archivo `.env` y reinicia; "
        "consulta README.md.",
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
    },
    "pt": {
        "header": "## Switchboard\nUm chat para todos os modelos por trás da sua API compatível com OpenAI.",
        "demo_banner": "> **Modo demo**: nenhuma chave de API está configurada, então as respostas vêm de um "
        "simulador embutido que funciona offline. Para conversar com modelos reais, defina `OPENAI_API_KEY` "
        "(ou `LEMONDATA_API_KEY`, `OPENROUTER_API_KEY`, …) no ambiente ou em um arquivo `.env` e reinicie; "
        "veja o README.md.",
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
    },
}


def gradio_i18n() -> Any:
    """A ``gr.I18n`` with :data:`UI` (pass it to ``launch`` / ``mount_gradio_app``)."""
    import gradio as gr

    return gr.I18n(**{lang: dict(strings) for lang, strings in UI.items()})


def ui(key: str) -> Any:
    """A label the browser translates (a ``gr.I18n`` key); raises KeyError for a key not in :data:`UI`."""
    UI[DEFAULT_LANGUAGE][key]  # noqa: B018 - fail early on a typo
    from gradio.i18n import I18nData

    return I18nData(key)


# --- what the server writes, in the visitor's language ------------------------------------------------

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "thinking": "Thinking",
        "usage_line": "{prompt:,} tokens in · {completion:,} out · {price}",
        "price_unknown": "price unknown",
        "cost_upstream": "Price as reported by the provider for this reply.",
        "cost_catalogue": "Estimated from the list prices of {model}: {input} in and {output} out per "
        "million tokens.",
        "cost_unknown": "No price is known for {model}, so this reply's cost is not counted.",
        "session_empty": "**This session**: no replies yet.",
        "session_total": "**This session**: {replies} {replies_word} · {prompt:,} tokens in · "
        "{completion:,} out · {price}",
        "session_unpriced": " (+ {count} with unknown price)",
        "reply_one": "reply",
        "reply_many": "replies",
        "gauge": "Context: {used:,} of {budget:,} tokens ({percent})",
        "gauge_over": "older turns will be left out",
        "gauge_model": "Window of {model}: {window:,} tokens; {reserve:,} kept free for the reply.",
        "untitled": "New chat",
        "no_chats": "No saved chats yet.",
        "imported": "Imported “{title}”.",
        "import_failed": "That file is not a conversation exported from Switchboard (JSON), so nothing was "
        "imported.",
        "reply_in_progress": "A reply is still coming in this chat. Wait for it to finish, or press Stop (■), "
        "then switch chats.",
        "attachment_missing": "📎 {name} (the attachment is no longer available)",
        "exported_by": "Exported from Switchboard",
        "you": "You",
        "assistant": "Assistant",
    },
    "es": {
        "thinking": "Pensando",
        "usage_line": "{prompt:,} tokens de entrada · {completion:,} de salida · {price}",
        "price_unknown": "precio desconocido",
        "cost_upstream": "Precio informado por el proveedor para esta respuesta.",
        "cost_catalogue": "Estimado con los precios de lista de {model}: {input} de entrada y {output} de "
        "salida por millón de tokens.",
        "cost_unknown": "No se conoce el precio de {model}, así que el costo de esta respuesta no se cuenta.",
        "session_empty": "**Esta sesión**: todavía no hay respuestas.",
        "session_total": "**Esta sesión**: {replies} {replies_word} · {prompt:,} tokens de entrada · "
        "{completion:,} de salida · {price}",
        "session_unpriced": " (+ {count} con precio desconocido)",
        "reply_one": "respuesta",
        "reply_many": "respuestas",
        "gauge": "Contexto: {used:,} de {budget:,} tokens ({percent})",
        "gauge_over": "se omitirán los turnos más antiguos",
        "gauge_model": "Ventana de {model}: {window:,} tokens; {reserve:,} reservados para la respuesta.",
        "untitled": "Nuevo chat",
        "no_chats": "Todavía no hay chats guardados.",
        "imported": "Se importó «{title}».",
        "import_failed": "Ese archivo no es una conversación exportada desde Switchboard (JSON), así que no "
        "se importó nada.",
        "reply_in_progress": "Todavía está llegando una respuesta en este chat. Espera a que termine, o pulsa "
        "Detener (■), y luego cambia de chat.",
        "attachment_missing": "📎 {name} (el adjunto ya no está disponible)",
        "exported_by": "Exportado desde Switchboard",
        "you": "Tú",
        "assistant": "Asistente",
    },
    "pt": {
        "thinking": "Pensando",
        "usage_line": "{prompt:,} tokens de entrada · {completion:,} de saída · {price}",
        "price_unknown": "preço desconhecido",
        "cost_upstream": "Preço informado pelo provedor para esta resposta.",
        "cost_catalogue": "Estimado com os preços de tabela de {model}: {input} de entrada e {output} de "
        "saída por milhão de tokens.",
        "cost_unknown": "O preço de {model} é desconhecido, então o custo desta resposta não é contado.",
        "session_empty": "**Esta sessão**: ainda não há respostas.",
        "session_total": "**Esta sessão**: {replies} {replies_word} · {prompt:,} tokens de entrada · "
        "{completion:,} de saída · {price}",
        "session_unpriced": " (+ {count} com preço desconhecido)",
        "reply_one": "resposta",
        "reply_many": "respostas",
        "gauge": "Contexto: {used:,} de {budget:,} tokens ({percent})",
        "gauge_over": "os turnos mais antigos serão deixados de fora",
        "gauge_model": "Janela de {model}: {window:,} tokens; {reserve:,} reservados para a resposta.",
        "untitled": "Novo chat",
        "no_chats": "Ainda não há chats salvos.",
        "imported": "“{title}” foi importado.",
        "import_failed": "Esse arquivo não é uma conversa exportada do Switchboard (JSON), então nada foi "
        "importado.",
        "reply_in_progress": "Uma resposta ainda está chegando neste chat. Espere terminar, ou clique em "
        "Parar (■), e depois troque de chat.",
        "attachment_missing": "📎 {name} (o anexo não está mais disponível)",
        "exported_by": "Exportado do Switchboard",
        "you": "Você",
        "assistant": "Assistente",
    },
}


# The session line before any reply is shown by the browser (as a label), after that by the server.
for _lang in LANGUAGES:
    UI[_lang]["session_empty"] = TEXTS[_lang]["session_empty"]


def text(key: str, lang: str = DEFAULT_LANGUAGE, **params: object) -> str:
    """A server-written string in ``lang`` (English when the language or the key is missing there)."""
    table = TEXTS.get(lang) or TEXTS[DEFAULT_LANGUAGE]
    template = table.get(key) or TEXTS[DEFAULT_LANGUAGE][key]
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return TEXTS[DEFAULT_LANGUAGE][key].format(**params)


# --- friendly error messages (English in chatbot.errors.MESSAGES) --------------------------------------

ERRORS: dict[str, dict[str, str]] = {
    "es": {
        "auth": "El proveedor rechazó la clave API (falta, es incorrecta o fue revocada). Revisa "
        "OPENAI_API_KEY (o la variable de clave de tu proveedor) y reinicia.",
        "no_balance": "El proveedor dice que la cuenta no tiene saldo. Añade saldo con el proveedor o elige "
        "un modelo más barato.",
        "refused": "El proveedor rechazó esta solicitud (política de contenido o reglas de acceso). "
        "Reformula el mensaje o elige otro modelo.",
        "model_not_found": "El proveedor no conoce el modelo «{model}». Elige otro modelo de la lista.",
        "too_long": "La conversación es demasiado larga para este modelo. Empieza un chat nuevo o elige un "
        "modelo con una ventana de contexto más grande.",
        "message_too_long": "Tu mensaje es demasiado largo para {model}: unos {tokens:,} tokens, y este "
        "modelo acepta como máximo {budget:,} aquí. Acórtalo o divídelo en partes. No se envió nada.",
        "rate_limited": "El proveedor está limitando las solicitudes. Vuelve a intentarlo en {wait}.",
        "rate_limited_soon": "El proveedor está limitando las solicitudes. Espera un momento y vuelve a "
        "intentarlo.",
        "overloaded": "El proveedor está sobrecargado o caído en este momento. Vuelve a intentarlo en un "
        "minuto o elige otro modelo.",
        "timeout": "El proveedor no respondió a tiempo. Vuelve a intentarlo o elige un modelo más rápido.",
        "first_token_timeout": "El modelo no envió nada durante {seconds:g} segundos, así que se detuvo la "
        "solicitud. Vuelve a intentarlo o elige otro modelo.",
        "idle_timeout": "El modelo se quedó en silencio {seconds:g} segundos a mitad de la respuesta, así "
        "que se detuvo la solicitud.",
        "connection": "No se pudo contactar al proveedor en su dirección. Revisa la red y OPENAI_BASE_URL.",
        "cut": "La conexión con el proveedor se cortó antes de que la respuesta estuviera completa.",
        "upstream_error": "El proveedor informó un error al responder: {detail}",
        "bad_request": "El proveedor rechazó la solicitud por no ser válida. Prueba a reformularla o elige "
        "otro modelo.",
        "unknown_model": "«{model}» no es uno de los modelos que se ofrecen aquí. Elige uno de la lista.",
        "empty_message": "Escribe un mensaje primero.",
        "internal": "Algo salió mal de nuestro lado. Tu mensaje se conserva: intenta enviarlo de nuevo.",
        "store_unavailable": "No se puede contactar ahora con el almacén compartido de la aplicación (Redis), "
        "así que no se envió ni se guardó nada. Vuelve a intentarlo en un momento.",
        "not_saved": "Esta respuesta no se pudo guardar en el servidor (falló el almacén de conversaciones). "
        "El servidor sigue intentándolo mientras funcione; hasta entonces, copia la respuesta si la necesitas.",
        "cut_note": "La respuesta se cortó aquí.",
        "input_too_long": "Tu mensaje tiene {chars:,} caracteres; lo máximo que acepta esta aplicación es "
        "{limit:,}. Acórtalo o divídelo en partes. No se envió nada.",
        "limit_messages": "Alcanzaste el límite de {limit}. Vuelve a intentarlo en {wait}.",
        "limit_tokens": "Usaste tu cupo de {limit}. Vuelve a intentarlo en {wait}.",
        "limit_one_at_a_time": "Una respuesta a la vez, por favor: espera a que termine la respuesta actual "
        "(o detenla) y vuelve a enviar.",
        "limit_capacity": "La aplicación está atendiendo todos los chats que puede ahora mismo. Vuelve a "
        "intentarlo en unos segundos.",
        "limit_budget": "Esta aplicación alcanzó su límite de gasto de hoy. Se renueva en {wait} (a la "
        "medianoche UTC). Puedes pegar tu propia clave API en la configuración para seguir chateando.",
        "need_user_key": "Esta aplicación funciona con las claves API de sus visitantes: abre «Tu clave API» "
        "y pega la tuya para chatear.",
        "bad_user_key": "Eso no parece una clave API (debería ser una sola línea de letras, dígitos y "
        "guiones). No se envió nada.",
        "trimmed_note": "Se omitieron {turns} turno(s) antiguos de lo que ve el modelo, para que quepa en su "
        "ventana de contexto.",
        "no_vision": "{model} no puede ver imágenes. Elige un modelo que pueda (por ejemplo «fast») o quita "
        "la imagen. No se envió nada.",
        "attachment_too_large": "«{name}» es demasiado grande: {size} (el máximo es {limit}). No se envió nada.",
        "attachment_unsupported": "No se puede leer «{name}» aquí: adjunta imágenes (PNG, JPEG, WebP, GIF) o "
        "archivos de texto. No se envió nada.",
        "too_many_attachments": "Demasiados adjuntos: como máximo {limit} por mensaje. No se envió nada.",
        "bad_event": "No se pudo procesar esta solicitud: no es lo que envía esta página. Recarga la página e "
        "inténtalo de nuevo.",
        "reply_cap": "La respuesta pasó su límite de {limit:,} tokens (el proveedor no se detuvo en él), así "
        "que se detuvo aquí. Pide una respuesta más corta o continúa en un mensaje nuevo.",
        "reply_too_large": "El proveedor envió más de lo que cabe en una respuesta aquí ({size}), así que se "
        "detuvo la respuesta. Vuelve a intentarlo o elige otro modelo.",
        "reply_timeout": "La respuesta tardó más de {seconds:g} segundos, lo máximo que puede tardar aquí, así "
        "que se detuvo. Pide una respuesta más corta o elige un modelo más rápido.",
        "not_event_stream": "El proveedor respondió con algo que no es una respuesta de chat (una página web, "
        "quizá de un proxy o de una pantalla de inicio de sesión). Vuelve a intentarlo en un minuto; si "
        "persiste, el OPENAI_BASE_URL de la aplicación probablemente apunta a una dirección equivocada.",
        "empty_reply": "El proveedor terminó la respuesta sin ningún texto (quizá lo interrumpió otra "
        "solicitud, o está sobrecargado). Vuelve a enviar el mensaje o elige otro modelo.",
        "unfinished": "El proveedor dejó de enviar antes de indicar que la respuesta estaba terminada, así que "
        "puede estar incompleta. Vuelve a enviar el mensaje para obtener una respuesta entera.",
        "too_long_empty": "El proveedor devolvió una respuesta vacía, que es como algunos servidores rechazan "
        "una conversación más larga que la ventana de contexto del modelo. Empieza un chat nuevo o elige un "
        "modelo con una ventana más grande.",
    },
    "pt": {
        "auth": "O provedor recusou a chave de API (ela está ausente, errada ou foi revogada). Verifique "
        "OPENAI_API_KEY (ou a variável de chave do seu provedor) e reinicie.",
        "no_balance": "O provedor diz que a conta está sem créditos. Adicione créditos com o provedor ou "
        "escolha um modelo mais barato.",
        "refused": "O provedor recusou esta solicitação (política de conteúdo ou regras de acesso). "
        "Reformule a mensagem ou escolha outro modelo.",
        "model_not_found": "O provedor não conhece o modelo “{model}”. Escolha outro modelo da lista.",
        "too_long": "A conversa está longa demais para este modelo. Comece um novo chat ou escolha um modelo "
        "com uma janela de contexto maior.",
        "message_too_long": "Sua mensagem é longa demais para {model}: cerca de {tokens:,} tokens, e este "
        "modelo aceita no máximo {budget:,} aqui. Encurte-a ou divida-a em partes. Nada foi enviado.",
        "rate_limited": "O provedor está limitando as solicitações. Tente novamente em {wait}.",
        "rate_limited_soon": "O provedor está limitando as solicitações. Aguarde um momento e tente de novo.",
        "overloaded": "O provedor está sobrecarregado ou fora do ar agora. Tente novamente em um minuto ou "
        "escolha outro modelo.",
        "timeout": "O provedor não respondeu a tempo. Tente novamente ou escolha um modelo mais rápido.",
        "first_token_timeout": "O modelo não enviou nada por {seconds:g} segundos, então a solicitação foi "
        "interrompida. Tente novamente ou escolha outro modelo.",
        "idle_timeout": "O modelo ficou em silêncio por {seconds:g} segundos no meio da resposta, então a "
        "solicitação foi interrompida.",
        "connection": "Não foi possível contatar o provedor no endereço dele. Verifique a rede e "
        "OPENAI_BASE_URL.",
        "cut": "A conexão com o provedor caiu antes de a resposta ficar completa.",
        "upstream_error": "O provedor informou um erro ao responder: {detail}",
        "bad_request": "O provedor rejeitou a solicitação como inválida. Tente reformular ou escolha outro "
        "modelo.",
        "unknown_model": "“{model}” não é um dos modelos oferecidos aqui. Escolha um da lista.",
        "empty_message": "Digite uma mensagem primeiro.",
        "internal": "Algo deu errado do nosso lado. Sua mensagem foi mantida: tente enviá-la de novo.",
        "store_unavailable": "Não é possível contatar agora o armazenamento compartilhado do app (Redis), "
        "então nada foi enviado nem salvo. Tente novamente em um momento.",
        "not_saved": "Esta resposta não pôde ser salva no servidor (o armazenamento de conversas falhou). O "
        "servidor continua tentando enquanto estiver em execução; até lá, copie a resposta se precisar dela.",
        "cut_note": "A resposta foi cortada aqui.",
        "input_too_long": "Sua mensagem tem {chars:,} caracteres; o máximo que este app aceita é {limit:,}. "
        "Encurte-a ou divida-a em partes. Nada foi enviado.",
        "limit_messages": "Você atingiu o limite de {limit}. Tente novamente em {wait}.",
        "limit_tokens": "Você usou sua cota de {limit}. Tente novamente em {wait}.",
        "limit_one_at_a_time": "Uma resposta por vez, por favor: espere a resposta atual terminar (ou "
        "interrompa-a) e envie de novo.",
        "limit_capacity": "O app está atendendo o máximo de chats que consegue agora. Tente novamente em "
        "alguns segundos.",
        "limit_budget": "Este app atingiu o limite de gastos de hoje. Ele é renovado em {wait} (à meia-noite "
        "UTC). Você pode colar sua própria chave de API nas configurações para continuar conversando.",
        "need_user_key": "Este app funciona com as chaves de API dos visitantes: abra “Sua chave de API” e "
        "cole a sua para conversar.",
        "bad_user_key": "Isso não parece uma chave de API (deveria ser uma única linha de letras, dígitos e "
        "hífens). Nada foi enviado.",
        "trimmed_note": "{turns} turno(s) mais antigo(s) ficaram de fora do que o modelo vê, para caber na "
        "janela de contexto dele.",
        "no_vision": "{model} não consegue ver imagens. Escolha um modelo que consiga (por exemplo “fast”) ou "
        "remova a imagem. Nada foi enviado.",
        "attachment_too_large": "“{name}” é grande demais: {size} (o máximo é {limit}). Nada foi enviado.",
        "attachment_unsupported": "Não é possível ler “{name}” aqui: anexe imagens (PNG, JPEG, WebP, GIF) ou "
        "arquivos de texto. Nada foi enviado.",
        "too_many_attachments": "Anexos demais: no máximo {limit} por mensagem. Nada foi enviado.",
        "bad_event": "Não foi possível processar esta solicitação: não é o que esta página envia. Recarregue a "
        "página e tente de novo.",
        "reply_cap": "A resposta passou do limite de {limit:,} tokens (o provedor não parou nele), então foi "
        "interrompida aqui. Peça uma resposta mais curta ou continue em uma nova mensagem.",
        "reply_too_large": "O provedor enviou mais do que cabe em uma resposta aqui ({size}), então a resposta "
        "foi interrompida. Tente novamente ou escolha outro modelo.",
        "reply_timeout": "A resposta levou mais de {seconds:g} segundos, o máximo que uma resposta pode levar "
        "aqui, então foi interrompida. Peça uma resposta mais curta ou escolha um modelo mais rápido.",
        "not_event_stream": "O provedor respondeu com algo que não é uma resposta de chat (uma página da web, "
        "talvez de um proxy ou de uma tela de login). Tente novamente em um minuto; se continuar, o "
        "OPENAI_BASE_URL do app provavelmente aponta para o endereço errado.",
        "empty_reply": "O provedor encerrou a resposta sem nenhum texto (talvez outra solicitação a tenha "
        "interrompido, ou ele esteja sobrecarregado). Envie a mensagem de novo ou escolha outro modelo.",
        "unfinished": "O provedor parou de enviar antes de dizer que a resposta estava terminada, então ela "
        "pode estar incompleta. Envie a mensagem de novo para ter uma resposta inteira.",
        "too_long_empty": "O provedor devolveu uma resposta vazia, que é como alguns servidores recusam uma "
        "conversa mais longa que a janela de contexto do modelo. Comece um novo chat ou escolha um modelo com "
        "uma janela maior.",
    },
}

_UNITS: dict[str, tuple[tuple[str, str], tuple[str, str], tuple[str, str]]] = {
    "en": (("second", "seconds"), ("minute", "minutes"), ("hour", "hours")),
    "es": (("segundo", "segundos"), ("minuto", "minutos"), ("hora", "horas")),
    "pt": (("segundo", "segundos"), ("minuto", "minutos"), ("hora", "horas")),
}


def duration(seconds: float, lang: str = DEFAULT_LANGUAGE) -> str:
    """A wait in words in ``lang``: '42 seconds', '10 minutos', '3 horas'."""
    units = _UNITS.get(lang, _UNITS[DEFAULT_LANGUAGE])
    amount = math.ceil(max(seconds, 0))
    unit = units[0]
    if amount >= 90:
        amount, unit = math.ceil(amount / 60), units[1]
        if amount >= 90:
            amount, unit = math.ceil(amount / 60), units[2]
    return f"{amount} {unit[0] if amount == 1 else unit[1]}"


def placeholders(template: str) -> set[str]:
    """The field names a ``str.format`` template uses (for the every-key-in-every-language test)."""
    import string

    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def error_template(kind: str, lang: str, english: Mapping[str, str]) -> str:
    """The template for an error ``kind`` in ``lang``, falling back to ``english``."""
    if lang != DEFAULT_LANGUAGE:
        translated = ERRORS.get(lang, {}).get(kind)
        if translated:
            return translated
    return english[kind]

"""Every error kind, defined once: the HTTP status and the API code the HTTP API answers with, and the message a
person reads, in English, Spanish and Portuguese (the same placeholders in each: tests/test_i18n.py checks).

The chat tab, gradio_client's ``/chat`` and the HTTP API all say the messages of :data:`KINDS` (rendered by
:func:`chatbot.core.errors.render`); the API's ``{"error": {"code", "message"}}`` carries the kind's ``code`` with the
kind's ``status`` (:data:`API_STATUS`). Two kinds for a message that is too long: ``input_too_long`` counts
characters (``CHATBOT_MAX_MESSAGE_CHARS``, checked before anything is tokenised), ``message_too_long`` counts
tokens (the model's prompt budget). The API's own refusals of a request (auth, routing, malformed bodies:
:data:`API_ONLY`) have a status and a code but no table message: their English text names the field or the
route, and is written where they are raised. :data:`NOTES` are not errors: notes added to a reply.

Pure data: no imports from the app, no network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chatbot.core.reader_kinds import READER_KINDS


@dataclass(frozen=True)
class ErrorKind:
    """One kind of failure. ``messages``: language -> ``str.format`` template; ``code``: the API's name for it
    (the kind itself unless given)."""

    kind: str
    status: int
    messages: Mapping[str, str]
    code: str = ""

    def __post_init__(self) -> None:
        if not self.code:
            object.__setattr__(self, "code", self.kind)


_TABLE: tuple[ErrorKind, ...] = (
    ErrorKind("auth", 502, {
        "en": "The provider refused the API key (it is missing, wrong or revoked). Check OPENAI_API_KEY "
            "(or your provider's key variable) and restart.",
        "es": "El proveedor rechazó la clave API (falta, es incorrecta o fue revocada). Revisa "
            "OPENAI_API_KEY (o la variable de clave de tu proveedor) y reinicia.",
        "pt": "O provedor recusou a chave de API (ela está ausente, errada ou foi revogada). Verifique "
            "OPENAI_API_KEY (ou a variável de chave do seu provedor) e reinicie.",
    }),
    ErrorKind("no_balance", 502, {
        "en": "The provider says the account has no credit left. Add credit with the provider, or pick a "
            "cheaper model.",
        "es": "El proveedor dice que la cuenta no tiene saldo. Añade saldo con el proveedor o elige un "
            "modelo más barato.",
        "pt": "O provedor diz que a conta está sem créditos. Adicione créditos com o provedor ou escolha "
            "um modelo mais barato.",
    }),
    ErrorKind("refused", 422, {
        "en": "The provider refused this request (content policy or access rules). Rephrase the message "
            "or pick another model.",
        "es": "El proveedor rechazó esta solicitud (política de contenido o reglas de acceso). Reformula "
            "el mensaje o elige otro modelo.",
        "pt": "O provedor recusou esta solicitação (política de conteúdo ou regras de acesso). Reformule "
            "a mensagem ou escolha outro modelo.",
    }),
    ErrorKind("model_not_found", 502, {
        "en": "The provider does not know the model “{model}”. Pick another model from the list.",
        "es": "El proveedor no conoce el modelo «{model}». Elige otro modelo de la lista.",
        "pt": "O provedor não conhece o modelo “{model}”. Escolha outro modelo da lista.",
    }),
    ErrorKind("too_long", 422, {
        "en": "The conversation is too long for this model. Start a new chat or pick a model with a "
            "larger context window.",
        "es": "La conversación es demasiado larga para este modelo. Empieza un chat nuevo o elige un "
            "modelo con una ventana de contexto más grande.",
        "pt": "A conversa está longa demais para este modelo. Comece um novo chat ou escolha um modelo "
            "com uma janela de contexto maior.",
    }),
    ErrorKind("message_too_long", 422, {
        "en": "Your message is too long for {model}: about {tokens:,} tokens, and this model takes at "
            "most {budget:,} here. Shorten it or split it into parts. Nothing was sent.",
        "es": "Tu mensaje es demasiado largo para {model}: unos {tokens:,} tokens, y este modelo acepta "
            "como máximo {budget:,} aquí. Acórtalo o divídelo en partes. No se envió nada.",
        "pt": "Sua mensagem é longa demais para {model}: cerca de {tokens:,} tokens, e este modelo aceita "
            "no máximo {budget:,} aqui. Encurte-a ou divida-a em partes. Nada foi enviado.",
    }),
    ErrorKind("rate_limited", 429, {
        "en": "The provider is rate limiting requests. Try again in {wait}.",
        "es": "El proveedor está limitando las solicitudes. Vuelve a intentarlo en {wait}.",
        "pt": "O provedor está limitando as solicitações. Tente novamente em {wait}.",
    }),
    ErrorKind("rate_limited_soon", 429, {
        "en": "The provider is rate limiting requests. Wait a moment and try again.",
        "es": "El proveedor está limitando las solicitudes. Espera un momento y vuelve a intentarlo.",
        "pt": "O provedor está limitando as solicitações. Aguarde um momento e tente de novo.",
    }),
    ErrorKind("overloaded", 502, {
        "en": "The provider is overloaded or down right now. Try again in a minute, or pick another "
            "model.",
        "es": "El proveedor está sobrecargado o caído en este momento. Vuelve a intentarlo en un minuto o "
            "elige otro modelo.",
        "pt": "O provedor está sobrecarregado ou fora do ar agora. Tente novamente em um minuto ou "
            "escolha outro modelo.",
    }),
    ErrorKind("timeout", 504, {
        "en": "The provider did not answer in time. Try again, or pick a faster model.",
        "es": "El proveedor no respondió a tiempo. Vuelve a intentarlo o elige un modelo más rápido.",
        "pt": "O provedor não respondeu a tempo. Tente novamente ou escolha um modelo mais rápido.",
    }),
    ErrorKind("first_token_timeout", 504, {
        "en": "The model sent nothing for {seconds:g} seconds, so the request was stopped. Try again or "
            "pick another model.",
        "es": "El modelo no envió nada durante {seconds:g} segundos, así que se detuvo la solicitud. "
            "Vuelve a intentarlo o elige otro modelo.",
        "pt": "O modelo não enviou nada por {seconds:g} segundos, então a solicitação foi interrompida. "
            "Tente novamente ou escolha outro modelo.",
    }),
    ErrorKind("idle_timeout", 504, {
        "en": "The model went silent for {seconds:g} seconds mid-reply, so the request was stopped.",
        "es": "El modelo se quedó en silencio {seconds:g} segundos a mitad de la respuesta, así que se "
            "detuvo la solicitud.",
        "pt": "O modelo ficou em silêncio por {seconds:g} segundos no meio da resposta, então a "
            "solicitação foi interrompida.",
    }),
    ErrorKind("connection", 502, {
        "en": "Could not reach the provider at its address. Check the network and OPENAI_BASE_URL.",
        "es": "No se pudo contactar al proveedor en su dirección. Revisa la red y OPENAI_BASE_URL.",
        "pt": "Não foi possível contatar o provedor no endereço dele. Verifique a rede e OPENAI_BASE_URL.",
    }),
    ErrorKind("cut", 502, {
        "en": "The connection to the provider broke before the reply was complete.",
        "es": "La conexión con el proveedor se cortó antes de que la respuesta estuviera completa.",
        "pt": "A conexão com o provedor caiu antes de a resposta ficar completa.",
    }),
    ErrorKind("upstream_error", 502, {
        "en": "The provider reported an error while answering: {detail}",
        "es": "El proveedor informó un error al responder: {detail}",
        "pt": "O provedor informou um erro ao responder: {detail}",
    }),
    ErrorKind("bad_request", 422, {
        "en": "The provider rejected the request as invalid. Try rephrasing, or pick another model.",
        "es": "El proveedor rechazó la solicitud por no ser válida. Prueba a reformularla o elige otro "
            "modelo.",
        "pt": "O provedor rejeitou a solicitação como inválida. Tente reformular ou escolha outro modelo.",
    }),
    ErrorKind("compare_off", 403, {  # Compare (chatbot.core.compare)
        "en": "Comparing models is turned off on this server.",
        "es": "La comparación de modelos está desactivada en este servidor.",
        "pt": "A comparação de modelos está desativada neste servidor.",
    }),
    ErrorKind("compare_columns", 422, {
        "en": "Pick between 2 and {limit} different models to compare (got {count}).",
        "es": "Elige entre 2 y {limit} modelos distintos para comparar (se recibieron {count}).",
        "pt": "Escolha entre 2 e {limit} modelos diferentes para comparar (foram recebidos {count}).",
    }),
    ErrorKind("unknown_model", 422, {
        "en": "“{model}” is not one of the models offered here. Pick one from the list.",
        "es": "«{model}» no es uno de los modelos que se ofrecen aquí. Elige uno de la lista.",
        "pt": "“{model}” não é um dos modelos oferecidos aqui. Escolha um da lista.",
    }),
    ErrorKind("empty_message", 422, {
        "en": "Type a message first.",
        "es": "Escribe un mensaje primero.",
        "pt": "Digite uma mensagem primeiro.",
    }),
    ErrorKind("internal", 500, {
        "en": "Something went wrong on our side. Your message is kept: try sending it again.",
        "es": "Algo salió mal de nuestro lado. Tu mensaje se conserva: intenta enviarlo de nuevo.",
        "pt": "Algo deu errado do nosso lado. Sua mensagem foi mantida: tente enviá-la de novo.",
    }),
    ErrorKind("input_too_long", 422, {
        "en": "Your message is {chars:,} characters long; the most this app takes is {limit:,}. Shorten "
            "it or split it into parts. Nothing was sent.",
        "es": "Tu mensaje tiene {chars:,} caracteres; lo máximo que acepta esta aplicación es {limit:,}. "
            "Acórtalo o divídelo en partes. No se envió nada.",
        "pt": "Sua mensagem tem {chars:,} caracteres; o máximo que este app aceita é {limit:,}. Encurte-a "
            "ou divida-a em partes. Nada foi enviado.",
    }),
    ErrorKind("limit_messages", 429, {
        "en": "You have reached the limit of {limit}. Try again in {wait}.",
        "es": "Alcanzaste el límite de {limit}. Vuelve a intentarlo en {wait}.",
        "pt": "Você atingiu o limite de {limit}. Tente novamente em {wait}.",
    }),
    ErrorKind("limit_tokens", 429, {
        "en": "You have used your allowance of {limit}. Try again in {wait}.",
        "es": "Usaste tu cupo de {limit}. Vuelve a intentarlo en {wait}.",
        "pt": "Você usou sua cota de {limit}. Tente novamente em {wait}.",
    }),
    ErrorKind("limit_one_at_a_time", 429, {
        "en": "One reply at a time, please: wait for the current reply to finish (or stop it), then send "
            "again.",
        "es": "Una respuesta a la vez, por favor: espera a que termine la respuesta actual (o detenla) y "
            "vuelve a enviar.",
        "pt": "Uma resposta por vez, por favor: espere a resposta atual terminar (ou interrompa-a) e "
            "envie de novo.",
    }),
    ErrorKind("limit_capacity", 503, {
        "en": "The app is serving as many chats as it can right now. Try again in a few seconds.",
        "es": "La aplicación está atendiendo todos los chats que puede ahora mismo. Vuelve a intentarlo "
            "en unos segundos.",
        "pt": "O app está atendendo o máximo de chats que consegue agora. Tente novamente em alguns "
            "segundos.",
    }),
    ErrorKind("limit_budget", 429, {
        "en": "This app has reached its spending limit for today. It resets in {wait} (at midnight UTC). "
            "You can paste your own API key in the settings to keep chatting.",
        "es": "Esta aplicación alcanzó su límite de gasto de hoy. Se renueva en {wait} (a la medianoche "
            "UTC). Puedes pegar tu propia clave API en la configuración para seguir chateando.",
        "pt": "Este app atingiu o limite de gastos de hoje. Ele é renovado em {wait} (à meia-noite UTC). "
            "Você pode colar sua própria chave de API nas configurações para continuar conversando.",
    }),
    ErrorKind("need_user_key", 403, {
        "en": "This app runs on visitors' own API keys: open “Your API key” and paste yours to chat.",
        "es": "Esta aplicación funciona con las claves API de sus visitantes: abre «Tu clave API» y pega "
            "la tuya para chatear.",
        "pt": "Este app funciona com as chaves de API dos visitantes: abra “Sua chave de API” e cole a "
            "sua para conversar.",
    }),
    ErrorKind("bad_user_key", 422, {
        "en": "That does not look like an API key (it should be one line of letters, digits and dashes). "
            "Nothing was sent.",
        "es": "Eso no parece una clave API (debería ser una sola línea de letras, dígitos y guiones). No "
            "se envió nada.",
        "pt": "Isso não parece uma chave de API (deveria ser uma única linha de letras, dígitos e "
            "hífens). Nada foi enviado.",
    }),
    ErrorKind("no_vision", 422, {
        "en": "{model} cannot see images. Pick a model that can (for example “fast”) or remove the image. "
            "Nothing was sent.",
        "es": "{model} no puede ver imágenes. Elige un modelo que pueda (por ejemplo «fast») o quita la "
            "imagen. No se envió nada.",
        "pt": "{model} não consegue ver imagens. Escolha um modelo que consiga (por exemplo “fast”) ou "
            "remova a imagem. Nada foi enviado.",
    }),
    ErrorKind("attachment_too_large", 422, {
        "en": "“{name}” is too large: {size} (the most is {limit}). Nothing was sent.",
        "es": "«{name}» es demasiado grande: {size} (el máximo es {limit}). No se envió nada.",
        "pt": "“{name}” é grande demais: {size} (o máximo é {limit}). Nada foi enviado.",
    }),
    ErrorKind("attachment_unsupported", 422, {
        "en": "“{name}” cannot be read here: attach images (PNG, JPEG, WebP, GIF) or text files. Nothing "
            "was sent.",
        "es": "No se puede leer «{name}» aquí: adjunta imágenes (PNG, JPEG, WebP, GIF) o archivos de "
            "texto. No se envió nada.",
        "pt": "Não é possível ler “{name}” aqui: anexe imagens (PNG, JPEG, WebP, GIF) ou arquivos de "
            "texto. Nada foi enviado.",
    }),
    ErrorKind("too_many_attachments", 422, {
        "en": "Too many attachments: at most {limit} per message. Nothing was sent.",
        "es": "Demasiados adjuntos: como máximo {limit} por mensaje. No se envió nada.",
        "pt": "Anexos demais: no máximo {limit} por mensagem. Nada foi enviado.",
    }),
    ErrorKind("bad_event", 400, {
        "en": "This request could not be processed: it is not what this page sends. Reload the page and "
            "try again.",
        "es": "No se pudo procesar esta solicitud: no es lo que envía esta página. Recarga la página e "
            "inténtalo de nuevo.",
        "pt": "Não foi possível processar esta solicitação: não é o que esta página envia. Recarregue a "
            "página e tente de novo.",
    }),
    ErrorKind("store_unavailable", 503, {
        "en": "The app's shared store (Redis) cannot be reached right now, so nothing was sent and "
            "nothing was saved. Try again in a moment.",
        "es": "No se puede contactar ahora con el almacén compartido de la aplicación (Redis), así que no "
            "se envió ni se guardó nada. Vuelve a intentarlo en un momento.",
        "pt": "Não é possível contatar agora o armazenamento compartilhado do app (Redis), então nada foi "
            "enviado nem salvo. Tente novamente em um momento.",
    }),
    ErrorKind("not_saved", 503, {
        "en": "This reply could not be saved on the server (the conversation store failed). The server "
            "keeps retrying while it runs; until then, copy the reply if you need it.",
        "es": "Esta respuesta no se pudo guardar en el servidor (falló el almacén de conversaciones). El "
            "servidor sigue intentándolo mientras funcione; hasta entonces, copia la respuesta si la necesitas.",
        "pt": "Esta resposta não pôde ser salva no servidor (o armazenamento de conversas falhou). O "
            "servidor continua tentando enquanto estiver em execução; até lá, copie a resposta se precisar dela.",
    }),
    ErrorKind("reply_cap", 502, {
        "en": "The reply passed its limit of {limit:,} tokens (the provider did not stop at it), so it "
            "was stopped here. Ask for a shorter answer, or continue in a new message.",
        "es": "La respuesta pasó su límite de {limit:,} tokens (el proveedor no se detuvo en él), así que "
            "se detuvo aquí. Pide una respuesta más corta o continúa en un mensaje nuevo.",
        "pt": "A resposta passou do limite de {limit:,} tokens (o provedor não parou nele), então foi "
            "interrompida aqui. Peça uma resposta mais curta ou continue em uma nova mensagem.",
    }),
    ErrorKind("reply_too_large", 502, {
        "en": "The provider sent more than one reply may hold here ({size}), so the reply was stopped. "
            "Try again, or pick another model.",
        "es": "El proveedor envió más de lo que cabe en una respuesta aquí ({size}), así que se detuvo la "
            "respuesta. Vuelve a intentarlo o elige otro modelo.",
        "pt": "O provedor enviou mais do que cabe em uma resposta aqui ({size}), então a resposta foi "
            "interrompida. Tente novamente ou escolha outro modelo.",
    }),
    ErrorKind("reply_timeout", 504, {
        "en": "The reply took longer than {seconds:g} seconds, the most one reply may take here, so it "
            "was stopped. Ask for a shorter answer, or pick a faster model.",
        "es": "La respuesta tardó más de {seconds:g} segundos, lo máximo que puede tardar aquí, así que "
            "se detuvo. Pide una respuesta más corta o elige un modelo más rápido.",
        "pt": "A resposta levou mais de {seconds:g} segundos, o máximo que uma resposta pode levar aqui, "
            "então foi interrompida. Peça uma resposta mais curta ou escolha um modelo mais rápido.",
    }),
    ErrorKind("not_event_stream", 502, {
        "en": "The provider answered with something that is not a chat reply (a web page, perhaps from a "
            "proxy or a login screen). Try again in a minute; if it persists, the app's OPENAI_BASE_URL probably "
            "points at the wrong address.",
        "es": "El proveedor respondió con algo que no es una respuesta de chat (una página web, quizá de "
            "un proxy o de una pantalla de inicio de sesión). Vuelve a intentarlo en un minuto; si persiste, el "
            "OPENAI_BASE_URL de la aplicación probablemente apunta a una dirección equivocada.",
        "pt": "O provedor respondeu com algo que não é uma resposta de chat (uma página da web, talvez de "
            "um proxy ou de uma tela de login). Tente novamente em um minuto; se continuar, o OPENAI_BASE_URL do app "
            "provavelmente aponta para o endereço errado.",
    }),
    ErrorKind("empty_reply", 502, {
        "en": "The provider ended the reply without any text (it may have been interrupted by another "
            "request, or be overloaded). Send the message again, or pick another model.",
        "es": "El proveedor terminó la respuesta sin ningún texto (quizá lo interrumpió otra solicitud, o "
            "está sobrecargado). Vuelve a enviar el mensaje o elige otro modelo.",
        "pt": "O provedor encerrou a resposta sem nenhum texto (talvez outra solicitação a tenha "
            "interrompido, ou ele esteja sobrecarregado). Envie a mensagem de novo ou escolha outro modelo.",
    }),
    ErrorKind("server_interrupted", 502, {
        "en": "The server stopped this reply before writing any of it, most likely because another request "
            "reached it (local servers such as llama.cpp answer one request at a time and interrupt the one "
            "running). Send the message again.",
        "es": "El servidor detuvo esta respuesta antes de escribir nada, probablemente porque le llegó otra "
            "solicitud (los servidores locales como llama.cpp atienden una solicitud a la vez e interrumpen la "
            "que está en curso). Vuelve a enviar el mensaje.",
        "pt": "O servidor interrompeu esta resposta antes de escrever qualquer parte, provavelmente porque "
            "chegou outra solicitação (servidores locais como o llama.cpp atendem uma solicitação por vez e "
            "interrompem a que está em andamento). Envie a mensagem de novo.",
    }),
    ErrorKind("unfinished", 502, {
        "en": "The provider stopped sending before it said the reply was finished, so the reply may be "
            "incomplete. Send the message again for a whole reply.",
        "es": "El proveedor dejó de enviar antes de indicar que la respuesta estaba terminada, así que "
            "puede estar incompleta. Vuelve a enviar el mensaje para obtener una respuesta entera.",
        "pt": "O provedor parou de enviar antes de dizer que a resposta estava terminada, então ela pode "
            "estar incompleta. Envie a mensagem de novo para ter uma resposta inteira.",
    }),
    ErrorKind("too_long_empty", 422, {
        "en": "The provider sent back an empty answer, which is how some servers refuse a conversation "
            "longer than the model's context window. Start a new chat, or pick a model with a larger window.",
        "es": "El proveedor devolvió una respuesta vacía, que es como algunos servidores rechazan una "
            "conversación más larga que la ventana de contexto del modelo. Empieza un chat nuevo o elige un modelo "
            "con una ventana más grande.",
        "pt": "O provedor devolveu uma resposta vazia, que é como alguns servidores recusam uma conversa "
            "mais longa que a janela de contexto do modelo. Comece um novo chat ou escolha um modelo com uma janela "
            "maior.",
    }),
    ErrorKind("shutting_down", 503, {
        "en": "The server is restarting, so the reply stopped here. Send the message again in a moment.",
        "es": "El servidor se está reiniciando, así que la respuesta se detuvo aquí. Vuelve a enviar el mensaje "
            "en un momento.",
        "pt": "O servidor está reiniciando, então a resposta parou aqui. Envie a mensagem de novo em um momento.",
    }),
)

_TABLE += tuple(ErrorKind(kind, status, messages, code) for kind, (status, messages, code) in READER_KINDS.items())

#: Every error kind with a message, by kind.
KINDS: dict[str, ErrorKind] = {k.kind: k for k in _TABLE}

#: The HTTP API's own refusals of a request, code -> status (their English text is written where raised).
API_ONLY: dict[str, int] = {
    "invalid_json": 400,
    "unauthorized": 401,
    "api_disabled": 403,
    "cross_origin": 403,
    "not_found": 404,
    "unknown_conversation": 404,
    "method_not_allowed": 405,
    "busy": 409,
    "body_too_large": 413,
    "invalid_request": 422,
}

#: Every code the HTTP API answers with, and its status (a framework error of any other status: ``http_error``).
API_STATUS: dict[str, int] = {**{k.code: k.status for k in _TABLE}, **API_ONLY}

#: Notes added to a reply (not errors: no status, no code).
NOTES: dict[str, dict[str, str]] = {
    "cut_note": {
        "en": "The reply was cut off here.",
        "es": "La respuesta se cortó aquí.",
        "pt": "A resposta foi cortada aqui.",
    },
    "trimmed_note": {
        "en": "{turns} older turn(s) were left out of what the model sees, to fit its context window.",
        "es": "Se omitieron {turns} turno(s) antiguos de lo que ve el modelo, para que quepa en su "
            "ventana de contexto.",
        "pt": "{turns} turno(s) mais antigo(s) ficaram de fora do que o modelo vê, para caber na janela "
            "de contexto dele.",
    },
}

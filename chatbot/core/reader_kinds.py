"""The failures whose fix is the operator's, as a reader who cannot set the app's variables is told them
(see chatbot.core.advice): kind -> (HTTP status, message per language, the API code it keeps). Pure data,
made :class:`~chatbot.core.error_kinds.ErrorKind` entries by chatbot.core.error_kinds."""

from __future__ import annotations

READER_KINDS: dict[str, tuple[int, dict[str, str], str]] = {
    "auth_own_key": (502, {
        "en": "The provider refused your API key (it may be wrong, expired, or without access to this "
            "model). Check the key in “Your API key” and try again.",
        "es": "El proveedor rechazó tu clave API (puede ser incorrecta, estar caducada o no tener acceso a "
            "este modelo). Revisa la clave en «Tu clave API» y vuelve a intentarlo.",
        "pt": "O provedor recusou sua chave de API (ela pode estar errada, expirada ou sem acesso a este "
            "modelo). Confira a chave em “Sua chave de API” e tente de novo.",
    }, "auth"),
    "auth_public_byok": (502, {
        "en": "The provider refused this app's API key, so it cannot answer right now. Paste your own key "
            "in “Your API key” to keep chatting, or try again later.",
        "es": "El proveedor rechazó la clave API de esta aplicación, así que ahora no puede responder. Pega "
            "tu propia clave en «Tu clave API» para seguir chateando, o vuelve a intentarlo más tarde.",
        "pt": "O provedor recusou a chave de API deste app, então ele não consegue responder agora. Cole sua "
            "própria chave em “Sua chave de API” para continuar conversando, ou tente mais tarde.",
    }, "auth"),
    "auth_operator": (502, {
        "en": "The provider refused this app's API key, so it cannot answer right now. Whoever runs this "
            "site has to fix it; try again later.",
        "es": "El proveedor rechazó la clave API de esta aplicación, así que ahora no puede responder. Quien "
            "administra este sitio tiene que corregirlo; vuelve a intentarlo más tarde.",
        "pt": "O provedor recusou a chave de API deste app, então ele não consegue responder agora. Quem "
            "administra este site precisa corrigir isso; tente mais tarde.",
    }, "auth"),
    "connection_operator": (502, {
        "en": "This app cannot reach its model provider right now. Try again in a minute; if it keeps "
            "happening, whoever runs this site has to fix it.",
        "es": "Esta aplicación no puede contactar ahora con su proveedor de modelos. Vuelve a intentarlo en "
            "un minuto; si sigue pasando, quien administra este sitio tiene que corregirlo.",
        "pt": "Este app não consegue contatar o provedor de modelos agora. Tente novamente em um minuto; se "
            "continuar, quem administra este site precisa corrigir isso.",
    }, "connection"),
    "not_event_stream_operator": (502, {
        "en": "The provider answered with something that is not a chat reply (a web page, perhaps from a "
            "proxy). Try again in a minute; if it keeps happening, whoever runs this site has to fix it.",
        "es": "El proveedor respondió con algo que no es una respuesta de chat (una página web, quizá de un "
            "proxy). Vuelve a intentarlo en un minuto; si sigue pasando, quien administra este sitio tiene "
            "que corregirlo.",
        "pt": "O provedor respondeu com algo que não é uma resposta de chat (uma página da web, talvez de um "
            "proxy). Tente novamente em um minuto; se continuar, quem administra este site precisa corrigir "
            "isso.",
    }, "not_event_stream"),
}

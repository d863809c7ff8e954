"""The HTTP face: the JSON/SSE API and its WebSocket, with login and token checks. It translates
requests into calls of the core and renders the core's events.

``routes`` builds the FastAPI app and its routes; ``gate`` decides who may call them; ``schemas`` holds the
request and response bodies, ``problems`` the error answers; ``websocket`` serves ``/chat/ws``; ``api`` the
chat service and the SSE encoding; ``access`` the login's throttle.
"""

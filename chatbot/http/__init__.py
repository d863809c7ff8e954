"""The HTTP face: the JSON/SSE API and its WebSocket, with login and token checks. It translates
requests into calls of the core and renders the core's events.
"""

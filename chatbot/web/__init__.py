"""The Gradio face: the chat tab, the saved-chats panel, uploads and sessions. It translates Gradio's
events into calls of the core and renders the core's events.
"""

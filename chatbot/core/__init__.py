"""The conversation core: settings, catalogue, tokens, history, the provider, limits, errors, usage and
storage. It imports neither Gradio nor the HTTP framework (tests/test_layout.py checks).
"""

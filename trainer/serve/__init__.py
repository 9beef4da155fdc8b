"""Using a result: chat in the terminal, the Gradio app, and the OpenAI-compatible HTTP server."""

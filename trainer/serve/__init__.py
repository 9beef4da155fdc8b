"""Using a result: chat in the terminal and the OpenAI-compatible HTTP server (the Gradio app: trainer/ui)."""

"""`trainer ui`: the Gradio app, a client of the commands (trainer.commands) and of the CLI it runs."""

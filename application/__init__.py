"""The application layer: the `dhr` command and the Gradio review GUI, on top of every other layer."""

"""The Gradio review GUI: layout (`app`), event handlers (`handlers`), background jobs (`jobs`), login (`login_gate`)."""

"""The review session behind the GUI, with no GUI toolkit: editing, overlays, brush strokes, jobs, the demo project."""

"""The workflow engine: pure Python (no ORM). Spec models, validation, templates, runner."""

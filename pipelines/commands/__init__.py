"""CLI sub-commands (thin: parse arguments, call pipelines code)."""

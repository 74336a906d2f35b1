"""The web UI's parts: one module per tab, composed by webui.build_app."""

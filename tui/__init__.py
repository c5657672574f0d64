"""prunetui's faces: the Typer CLI, the rich console sink and the Textual app."""

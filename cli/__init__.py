"""The `janus` command line: Typer code only; the work is done by commands/, replay/ and
bootstrap/."""

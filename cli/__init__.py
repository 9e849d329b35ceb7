"""The `janus` command line: Typer code only; commands/, replay/ and bootstrap/ do the work."""

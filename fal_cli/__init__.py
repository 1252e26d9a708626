"""The `fal-typed` command line: run, submit, batch, list and show fal endpoints from the shell.

It sits on top of `generated` and `fal_runtime` (which never import it), and is the only part of the project that
needs click and rich (the `cli` extra).
"""

"""Spec tooling: bringing fal's published data into `specs/` and reviewing what changed.

`importer` (fal's documents, JSON Schemas, TypeScript types (`tstypes`, `fieldmerge`), listing and gallery entries
→ normalized specs; `catalogue`: where each source came from), `sync` (fal's live model search, hardened against a
hostile listing), `diff` (what a spec change means for callers, for a pull request). They read and write specs; what a
spec generates is `codegen.generation`'s.
"""

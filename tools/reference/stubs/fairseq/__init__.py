"""Stand-in for fairseq: only the names the published Transformer-LS LM code imports.

Not fairseq. See tools/reference/stubs/README.md.
"""

"""Stand-in for fairseq.modules (see tools/reference/stubs/README.md)."""

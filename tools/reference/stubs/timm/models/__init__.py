"""Stand-in for timm.models (see tools/reference/stubs/README.md)."""

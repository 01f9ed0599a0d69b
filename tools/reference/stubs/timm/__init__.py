"""Stand-in for timm: only the names the published MsViT code imports.

Not timm. See tools/reference/stubs/README.md.
"""

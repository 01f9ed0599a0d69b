"""Stand-in for fairseq.dataclass (see tools/reference/stubs/README.md)."""
from dataclasses import dataclass
from typing import Optional


@dataclass
class FairseqDataclass:
    # The published decoder deletes this field from the config's __dict__ before
    # passing the rest to TransformerLSModel(**...), so it must be an instance field.
    _name: Optional[str] = None

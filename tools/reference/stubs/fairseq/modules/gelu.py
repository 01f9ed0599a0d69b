"""Stand-in for fairseq.modules.gelu (see tools/reference/stubs/README.md)."""
import torch


def gelu(x):
    # The exact (erf) GELU, evaluated in fp32 and cast back to the input's dtype.
    return torch.nn.functional.gelu(x.float()).type_as(x)

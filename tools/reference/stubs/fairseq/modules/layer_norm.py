"""Stand-in for fairseq.modules.layer_norm (see tools/reference/stubs/README.md)."""
import torch


def LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, export=False):  # noqa: N802
    # fairseq returns apex's fused LayerNorm only on CUDA with apex installed; the CPU
    # path is the plain torch module, with the same parameters (weight, bias).
    del export
    return torch.nn.LayerNorm(normalized_shape, eps, elementwise_affine)

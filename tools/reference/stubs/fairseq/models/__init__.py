"""Stand-in for fairseq.models (see tools/reference/stubs/README.md).

Only the module structure matters here: the language model keeps its decoder as
``.decoder``, so a state_dict has fairseq's ``decoder.`` prefix in front of what the
decoder holds.
"""
import torch.nn as nn

MODEL_REGISTRY = {}


def register_model(name, dataclass=None):
    def wrap(cls):
        MODEL_REGISTRY[name] = (cls, dataclass)
        return cls
    return wrap


class FairseqIncrementalDecoder(nn.Module):
    def __init__(self, dictionary):
        super().__init__()
        self.dictionary = dictionary
        self._incremental = {}

    # Incremental decoding is not used by the fixtures (forward runs whole segments).
    def get_incremental_state(self, key):
        return self._incremental.get(key)

    def set_incremental_state(self, incremental_state, key, value):
        del incremental_state
        self._incremental[key] = value


class FairseqLanguageModel(nn.Module):
    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, src_tokens, **kwargs):
        return self.decoder(src_tokens, **kwargs)

"""Helpers shared by the exporters that need neither torch nor numpy."""


def to_bool(v):
    """A config boolean: True/False, or the strings true/false, 1/0, yes/no in any case."""
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"not a boolean: {v!r}")
    return bool(v)

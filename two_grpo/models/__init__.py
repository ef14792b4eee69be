"""Models: loading (HF folders, builtin:tiny), the embedded tiny model, LoRA, the final-weights writer."""


def fmt_params(n: float) -> str:
    """A parameter count in human units: `0.80 M` below a billion, `1.54 B` from there."""
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"

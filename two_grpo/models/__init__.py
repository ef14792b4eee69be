"""Models: loading (HF folders, builtin:tiny), the embedded tiny model, LoRA, the final-weights writer."""

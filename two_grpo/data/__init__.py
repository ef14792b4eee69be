"""Data of the loop: prompts, rollouts and batches; the prompt sampler; the data gate; resampling."""

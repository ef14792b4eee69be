"""Pure GRPO-family math: advantages, losses, log-probs. Imports only torch."""

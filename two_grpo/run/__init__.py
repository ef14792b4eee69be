"""One training run: the loop, its state, checkpoints and resume, guards, tracking and the console."""

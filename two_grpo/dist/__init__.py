"""Processes: the rank context (torchrun / deepspeed launcher) and every rank-aware decision of the loop."""

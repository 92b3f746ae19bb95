"""Reinforcement-learning side of the runner: environments, buffers, algorithms by family."""

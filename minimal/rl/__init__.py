"""The reinforcement-learning runtime."""

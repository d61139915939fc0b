"""A reproducible RL research pipeline: PPO on MuJoCo and a differentiable pendulum."""

__version__ = "0.1.0"

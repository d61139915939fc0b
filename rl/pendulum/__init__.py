"""The differentiable-pendulum study: a stateless batched TorchRL environment and a
controller trained by back-propagating through it; its verbs are in `stages.py`."""

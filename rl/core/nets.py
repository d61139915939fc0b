"""Network building blocks both studies configure by name."""

from torch import nn

# config value (ppo.activation, pendulum.activation) -> torch module class
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}

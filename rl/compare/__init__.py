"""The comparison study: PPO and the differentiable-control controller scored by one
evaluator on gymnasium's Pendulum-v1, on matched axes (simulator steps, gradient steps,
wall-clock seconds). It reads both studies' outputs; neither study imports it."""

"""The PPO study on a gymnasium MuJoCo task: environments, models, collection, the training
loop, evaluation, and the verbs its rules run (`stages.py`)."""

"""The hyperparameter search of a tuning study (a `tune:` section; docs/tuning.md)."""

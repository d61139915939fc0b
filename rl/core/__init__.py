"""The machinery both studies share: config, paths, files, provenance, progress, device,
secrets, checkpoints and the stage runner. Imports nothing from the studies."""

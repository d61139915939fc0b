"""MLflow tracking: the store and its parent runs, one stage's run, and rebuilding the
records from results/ (`mlflow-sync`)."""

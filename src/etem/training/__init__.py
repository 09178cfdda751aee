"""One training loop for the three networks, checkpoints, MLflow logging, CLI."""

"""Cluster execution helpers: the MLflow tracking server for multi-node runs, SLURM resources."""

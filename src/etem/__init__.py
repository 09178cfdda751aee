"""etem: quantitative in situ environmental TEM.

Simulated training data (ASE + abTEM), denoising and occupancy networks (PyTorch),
benchmarks and application to experimental movies, orchestrated by Snakemake and
tracked in MLflow. All logic lives in this package; the workflow only calls the CLI.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

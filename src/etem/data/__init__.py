"""Training data: PyTorch datasets over the HDF5 image shards and movies, splits, augmentation."""

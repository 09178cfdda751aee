# rules of the training stage (filled in by its owner)

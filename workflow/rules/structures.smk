# rules of the structures stage (filled in by its owner)

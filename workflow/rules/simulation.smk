# rules of the simulation stage (filled in by its owner)

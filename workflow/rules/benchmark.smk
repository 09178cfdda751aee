# rules of the benchmark stage (filled in by its owner)

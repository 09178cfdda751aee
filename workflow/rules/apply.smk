# rules of the apply stage (filled in by its owner)

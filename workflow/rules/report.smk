# rules of the report stage (filled in by its owner)

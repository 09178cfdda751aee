# rules of the retrain stage (filled in by its owner)

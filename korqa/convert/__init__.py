"""Converting models: foreign checkpoints in, trimmed and quantised readers out."""

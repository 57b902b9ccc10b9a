"""Model implementations, one folder per ``model_type``."""

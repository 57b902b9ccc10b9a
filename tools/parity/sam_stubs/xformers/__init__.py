"""xformers stand-in: perception_models' transformer and probe import ``xformers.ops``."""

"""timm stand-in: perception_models' vision transformer imports ``timm.layers.DropPath``."""

"""torchcodec stand-in: sam_audio.processor and perception_models import its decoders."""

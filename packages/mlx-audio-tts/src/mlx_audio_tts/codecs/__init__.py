"""Neural audio codecs that the TTS models speak through (SNAC for Orpheus)."""

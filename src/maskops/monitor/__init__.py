"""Monitoring: the prediction store (every served prediction in a real database), image quality
features, feedback and business stats read from the store."""

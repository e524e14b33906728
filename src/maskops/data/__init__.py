"""The data stage: sources, validation, group-aware splits, face crops and the versioned manifest."""

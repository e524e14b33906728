"""Model-running code shared by the CLI, the detection pipeline and the service (no torch here)."""

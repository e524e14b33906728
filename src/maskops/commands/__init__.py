"""CLI command groups, one module each; registered in ``maskops.cli``."""

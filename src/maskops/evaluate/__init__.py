"""Evaluation: pure metrics (classification, calibration, detection), reports and plots."""

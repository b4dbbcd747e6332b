"""RHEED-specific code: image I/O, synthetic data, splits, metrics, reports and prediction."""

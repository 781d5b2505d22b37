"""Datasets: image loading, ground truth, the synthetic demo set."""

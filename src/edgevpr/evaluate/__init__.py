"""Evaluation: descriptors, recall@N, cost metrics and the protocol they were measured under."""

"""Nearest-neighbour search over descriptors with faiss."""

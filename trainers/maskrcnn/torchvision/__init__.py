"""Mask R-CNN on torchvision: the adapter and its own training loop, the models, the data."""

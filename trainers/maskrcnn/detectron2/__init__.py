"""Mask R-CNN on Detectron2: the adapter, its config (model zoo, weights, parameters) and its hooks.

Detectron2 is imported only inside these modules; the registry imports them only when the
backend is chosen.
"""

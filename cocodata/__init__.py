"""COCO instance-segmentation data: validation, splitting, conversion, the demo set, and the evaluator.

Everything here is framework-free and runs once per experiment, before any trial starts.
"""

"""Trainer adapters: one small class per framework behind the interface in `trainers.base`.

Framework libraries (ultralytics, detectron2, torchvision's detection models) are imported only
inside their adapter module, so a YOLO user never needs detectron2.
"""

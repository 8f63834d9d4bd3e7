"""YOLO11-seg through Ultralytics: the adapter, its data layout and Ultralytics dataset YAMLs as input."""

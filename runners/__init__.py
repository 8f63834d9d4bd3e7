"""The command line and the Ray Tune wiring: `python runners/tune.py --framework yolo`."""

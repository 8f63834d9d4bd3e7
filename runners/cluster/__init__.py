"""Ray itself: start a local instance (ended with the driver, by the reaper) or join an existing cluster.

    connect  `init_ray`: a local Ray or `--address`
    reaper   ends the local Ray's processes once the driver that started them is gone
"""
__all__ = ["connect", "reaper"]

"""Ray itself: a local instance that ends with its driver however the driver ends (connect.py starts
reaper.py before Ray), or an existing cluster joined with `--address`, which segtune leaves running.

    connect  `init_ray`: a local Ray or `--address`
    reaper   ends the local Ray's processes once the driver that started them is gone
"""

__all__ = ["connect", "reaper"]

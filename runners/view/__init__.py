"""What the terminal shows: the live view while a search runs, and the closing summary.

progress       a Ray Tune callback that feeds the view and prints it (live block or plain lines)
progress_view  the lines themselves, as pure functions of the search's state (no Ray, no I/O)
summary        the closing summary: counts, the best trial, the commands to look further
"""

__all__ = ["progress", "progress_view", "summary"]

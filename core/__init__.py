"""What every layer of segtune shares: the user-error type and the on-disk experiment record.

Nothing here imports a framework, Ray or another segtune package: every other package may import it.
"""

"""Ray itself: a local instance that ends with its driver however the driver ends (connect.py starts
reaper.py before Ray), or an existing cluster joined with --address, which segtune leaves running."""

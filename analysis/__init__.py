"""After the search: evaluate, rank, report, export."""

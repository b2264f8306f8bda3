"""nni-ext."""

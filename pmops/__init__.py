"""pmops: shared core and command-line entry points."""

"""Flow tests: pure, no I/O."""

"""Pure functions that render child objects (dicts) from a job's spec. No I/O."""

"""Role processes: the shell every role runs in, and the registry of roles `tectra run` knows."""

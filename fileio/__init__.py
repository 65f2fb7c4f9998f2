"""Files the project writes, written whole or not at all (the lowest layer: every package may use it)."""

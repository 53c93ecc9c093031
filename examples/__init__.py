"""Example Roost applications (user code: they use ``runtime`` and ``actors`` public names only)."""

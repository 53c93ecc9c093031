"""The actor model: identities, the values events carry, one live instance with its gates,
the host of every instance, and the stubs that address them (DESIGN.md layers 1, 4, 5)."""

"""How the built-in actors plug into every runtime: ``runtime`` loads ``builtins`` by import
string and reads the members of its extension protocol (``runtime/extensions.py``)."""


class _Builtins:
    name = "roost-builtins"
    # Built-in actor namespaces, by reserved binding name; the queue, idempotency, job status
    # and scheduler actors register here as they are built.
    namespaces: dict[str, type] = {}


builtins = _Builtins()

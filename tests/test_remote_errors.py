"""Errors that cross a process boundary (a call forwarded to another worker) arrive as the same
class, with the same arguments and attributes, as from a local call."""

from __future__ import annotations

import subprocess

from runtime import RemoteError, StorageLimitError
from runtime.model import codec
from runtime.model.remote_errors import arrived, from_wire, to_wire


def across(exc: Exception) -> Exception:
    """``exc`` raised in an actor, as a caller in another process receives it."""
    return from_wire(codec.decode(codec.encode(to_wire(arrived(exc)))))


def test_a_builtin_error_arrives_as_itself():
    found = across(ValueError("no such order", 42))
    assert type(found) is ValueError and found.args == ("no such order", 42) and found.remote


def test_roost_errors_keep_their_class_and_message():
    found = across(StorageLimitError("value of 200 KiB is over the limit"))
    assert type(found) is StorageLimitError and str(found) == "value of 200 KiB is over the limit"


def test_attributes_travel_with_the_error():
    failed = subprocess.CalledProcessError(3, ["pay", "order-1"])
    found = across(failed)
    assert type(found) is subprocess.CalledProcessError and str(found) == str(failed)
    assert (found.returncode, found.cmd) == (3, ["pay", "order-1"])


def test_a_class_the_caller_cannot_import_arrives_as_remote_error():
    found = from_wire(["nowhere.to.be.found", "Missing", ["boom"], {}, "boom"])
    assert type(found) is RemoteError and found.remote_type == "nowhere.to.be.found.Missing"
    assert found.remote_message == "boom" and found.remote


def test_a_remote_error_keeps_its_remote_type():
    class Local(Exception):
        pass

    found = across(Local("inside"))
    assert type(found) is RemoteError and found.remote_type.endswith("Local") and found.remote_message == "inside"

"""The HTTP front: ``create_app(rt)`` builds the ASGI app that ``rt.asgi_app`` serves."""

from .app import create_app

__all__ = ["create_app"]

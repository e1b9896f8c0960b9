"""Foundations shared by every layer above ``dhr``: the exception base for errors meant for the user."""

from core.errors import UserError

__all__ = ["UserError"]

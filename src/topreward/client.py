"""Kept import path of `topreward.serve.client` (the docs: `from topreward.client import RewardClient`)."""

from topreward.serve.client import ClientSession, RewardClient, ServerError, SessionLost

__all__ = ["ClientSession", "RewardClient", "ServerError", "SessionLost"]

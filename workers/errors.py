"""The workers' exception hierarchy."""

from __future__ import annotations


class WorkerError(Exception):
    """Root of every error the workers raise on purpose."""


class DeliveryFailed(WorkerError):
    """A channel did not take a notification; the outbox tries it again later."""

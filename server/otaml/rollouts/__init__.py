"""Staged rollouts: rings, the in-memory policy the poll path consults, and the evaluation that
advances, halts or completes a rollout."""

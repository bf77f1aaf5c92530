"""Shared code of the budget service: domain, store, pricing, tokens and HTTP plumbing."""

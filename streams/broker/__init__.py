"""Broker plumbing: the embedded Tansu process, topic creation, the durable log."""

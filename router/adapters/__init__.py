"""Adapters: one module per outside system (S3 or files, DynamoDB or SQLite, SageMaker, Lambda),
each implementing a port from router/ports.py and taking its client as an argument."""

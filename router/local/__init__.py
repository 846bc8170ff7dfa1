"""The embedded runtime behind `router serve`: the HTTP front that turns requests into API Gateway
events, the local worker pool and sweeper, and the local SageMaker emulator."""

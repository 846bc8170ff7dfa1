"""Lambda entry points: api (API Gateway), worker (async invoke), events (EventBridge), sweeper
(schedule). Each is thin: it parses its event and calls the service that bootstrap wires."""

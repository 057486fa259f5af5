"""The ``strata`` command line: run a local page server and manage tenants, branches,
checkpoints and tokens through its gRPC management API."""

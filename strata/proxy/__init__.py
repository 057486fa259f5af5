"""The proxy daemon: PostgreSQL clients connect by tenant and branch, authenticate with SCRAM,
and reach the branch's compute, which is woken on connect and suspended when idle."""

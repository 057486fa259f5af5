"""``strata console``: the web console for operators, a JSON API under ``/api/`` (the same
operations as the CLI, on the caller's own bearer token) and a page drawn from it."""

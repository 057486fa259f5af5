"""The control side: the ``strata`` CLI (``cli``), local orchestration of the page server,
the proxy and computes (``local``), and the proxy daemon (``proxy``)."""

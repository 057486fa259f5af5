"""``python -m strata.proxy``: run the proxy daemon (see ``strata.proxy.server``)."""

from strata.proxy.server import main

main()

"""Local orchestration: $STRATA_HOME, the page server's and the proxy's lifecycles, this
machine's computes, tenant passwords and the TTL reaper. Raises ``LocalError``s, never exits."""

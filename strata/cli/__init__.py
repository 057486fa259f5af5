"""The ``strata`` command line: click commands that drive the management API and the local
deployment. Only this package knows exit codes and click."""

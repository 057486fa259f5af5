"""Strata page server: versioned 8 KB pages in LSM layers, branches as LSN pointers."""

"""``strata mcp``: Strata's tools for agents over the Model Context Protocol (stdio and
streamable HTTP), a client of the page server like the CLI, with safe defaults."""

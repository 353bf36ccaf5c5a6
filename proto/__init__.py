"""The wire layer: the generated contract, typed errors and the client library."""

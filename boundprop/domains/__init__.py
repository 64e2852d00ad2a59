"""The abstract domains, one module each; see docs/architecture.md."""

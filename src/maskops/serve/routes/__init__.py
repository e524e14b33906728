"""API routers, one module each."""

"""The FastAPI service and the web app."""

"""The composition root above the providers: settings, the app factory, and serving it with uvicorn."""

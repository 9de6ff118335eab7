"""One router per resource, all mounted under ``/api/v1`` by :func:`serve_app.api.main.create_api`."""

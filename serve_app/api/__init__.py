"""The REST API: ``create_api(settings, runtime)`` in :mod:`serve_app.api.main`; one router per resource."""

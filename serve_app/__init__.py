"""The lwmecps-gym service: CLI, REST API on Ray Serve, storage."""

"""System tests: production-shaped deployments and the browser test (``make test-system``)."""

"""Constants shared by the docker runtime tests and their fixtures."""

ADMIN_TOKEN = "docker-test-admin-token"
STUB_IMAGE = "stub-server:1"

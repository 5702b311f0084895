"""A fake Docker Engine API on loopback for driving the real `docker` SDK in tests."""

from tests.fake_docker.engine import FakeDockerEngine

__all__ = ["FakeDockerEngine"]

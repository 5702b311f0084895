"""An in-repository ACI emulator (ARM + AAD + ACR over loopback HTTPS) for the real SDK."""

from tests.aci_emulator.server import CLIENT_ID, CLIENT_SECRET, TENANT, AciEmulator

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "TENANT", "AciEmulator"]

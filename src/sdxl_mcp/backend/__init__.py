"""The port between the service and whatever runs generations."""

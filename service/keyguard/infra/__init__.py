"""Infrastructure checks: the Pulumi program captured under mocks, and live AWS read back into the same shape."""

"""docker-credential-quayfed: short-lived Quay robot tokens through OIDC federation."""

__version__ = "0.1.0"

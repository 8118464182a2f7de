"""``python -m docker_credential_quayfed`` runs the helper."""

from docker_credential_quayfed.cli import main

raise SystemExit(main())

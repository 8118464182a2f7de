"""The frozen quay-credential-provider's first module: what bin/quay-credential-provider runs,
without the launcher's search for an installation (everything is inside the executable)."""

import sys

from docker_credential_quayfed.cli import main

sys.exit(main(["kubelet", *sys.argv[1:]]))

"""The frozen quay-credential-provider's first module: what bin/quay-credential-provider runs,
without the launcher's search for an installation (everything is inside the executable).
``install-on-node``, a first argument the kubelet never passes, runs the node installer
(packaging/installer/) instead."""

import sys

if sys.argv[1:2] == ["install-on-node"]:
    from docker_credential_quayfed.node_install import main as install_on_node

    sys.exit(install_on_node(sys.argv[2:]))

from docker_credential_quayfed.cli import main

sys.exit(main(["kubelet", *sys.argv[1:]]))

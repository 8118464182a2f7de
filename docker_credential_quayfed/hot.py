from docker_credential_quayfed.fastpath import *  # noqa
from docker_credential_quayfed.fastpath import read_private, open_private_dir  # noqa

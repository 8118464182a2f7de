"""``quay-credential-provider install-on-node``: put the self-contained provider on a node from a
pod (packaging/installer/: a DaemonSet with the host's directories mounted under --host-root).

Three things, each only when it differs from what the node already has, so a second run writes
nothing (not even an mtime):

- the provider's folder, copied into the kubelet's bin dir under ``.quay-credential-provider/``
  by the digest of its content (a new folder, renamed into place when complete), and the name
  the kubelet execs, ``quay-credential-provider``, a link switched to it by one rename: a
  kubelet that execs the provider meanwhile runs the old one or the new one, never a half-copied
  one. Each further entry name (``quay-credential-provider-partner``) is a link to that one;
- the provider's own files (``--node-file``: its config.toml, a CA bundle) into
  ``/etc/docker-credential-quayfed/``;
- this provider's entries merged into the kubelet's existing CredentialProviderConfig (YAML, or
  JSON as EKS writes it, and written back as it was): every other provider and field stays, an
  entry of ours replaces the one of its name. A managed node's kubelet already reads its cloud's
  file, and replacing that file would break the cloud registry's pulls. A file that is not a
  CredentialProviderConfig is refused before anything on the node changes.

Files are written atomically (a temp file in the same directory, fsync, rename). The kubelet
reads its CredentialProviderConfig only when it starts, and its flags cannot be set from a pod:
a line on stdout says when the kubelet must be restarted, or started with which flags.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker_credential_quayfed import files
from docker_credential_quayfed.kubelet import PROGRAM

COMMAND = "install-on-node"
KIND = "CredentialProviderConfig"
#: the kubelet.config.k8s.io versions whose CredentialProviderConfig the kubelet reads
API_VERSIONS = (
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
)
DEFAULT_BIN_DIR = "/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec"
DEFAULT_KUBELET_CONFIG = "/etc/kubernetes/credential-providers.yaml"
NODE_FILES_DIR = "/etc/docker-credential-quayfed"
#: where the provider's folders live in the bin dir, one per content digest
FOLDERS = f".{PROGRAM}"
#: the largest file this reads (a CredentialProviderConfig, a config.toml, a CA bundle)
READ_LIMIT = 4 << 20
#: a symlink chain longer than this at a node path is refused (a loop)
MAX_LINKS = 8


class InstallRefused(Exception):
    """Nothing on the node was changed; ``str(err)`` says why, in one line."""


# -- the CredentialProviderConfig ------------------------------------------------------------------
@dataclass(frozen=True)
class ProviderConfig:
    """A CredentialProviderConfig as read, and whether its file was JSON."""

    document: dict[str, Any]
    json: bool


def parse_config(text: str, where: str) -> ProviderConfig:
    """The CredentialProviderConfig in ``text`` (JSON, else YAML); refused when it is neither
    or not a CredentialProviderConfig the kubelet reads."""
    try:
        document, as_json = json.loads(text), True
    except ValueError:
        import yaml  # the node extra (PyYAML): only this command reads YAML

        try:
            document, as_json = yaml.safe_load(text), False
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise InstallRefused(f"{where} is neither JSON nor YAML{at}") from None
    if not isinstance(document, dict):
        raise InstallRefused(f"{where} is not a {KIND} (no mapping at its top)")
    if document.get("kind") != KIND:
        raise InstallRefused(f"{where} is not a {KIND} (kind: {document.get('kind')!r})")
    if document.get("apiVersion") not in API_VERSIONS:
        raise InstallRefused(
            f"{where}: apiVersion {document.get('apiVersion')!r} is not one the kubelet reads "
            f"({', '.join(API_VERSIONS)})"
        )
    providers = document.get("providers")
    if providers is None:
        providers = document["providers"] = []
    if not isinstance(providers, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) and p["name"] for p in providers
    ):
        raise InstallRefused(f"{where}: providers is not a list of entries with a name")
    return ProviderConfig(document, as_json)


def our_entries(document: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The entries to install: each names this provider or a link to it."""
    entries: list[dict[str, Any]] = document["providers"]
    if not entries:
        raise InstallRefused(f"{where} has no provider entry to install")
    for entry in entries:
        name = entry["name"]
        if name != PROGRAM and not (name.startswith(f"{PROGRAM}-") and "/" not in name):
            raise InstallRefused(
                f"{where}: entry {name!r} is not {PROGRAM} or a link named {PROGRAM}-..."
            )
    if len({entry["name"] for entry in entries}) != len(entries):
        raise InstallRefused(f"{where}: two entries have the same name")
    return entries


def merge(existing: dict[str, Any], ours: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``existing`` with each of ``ours`` in place of the entry of its name (in its position),
    or after the others; everything else as it was. ``existing`` is not changed."""
    by_name = {entry["name"]: entry for entry in ours}
    providers = [by_name.pop(p["name"], p) for p in existing.get("providers") or []]
    providers += [entry for entry in ours if entry["name"] in by_name]
    return {**existing, "providers": providers}


def new_config(ours: Sequence[dict[str, Any]], api_version: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": KIND, "providers": list(ours)}


def render(document: dict[str, Any], as_json: bool) -> bytes:
    if as_json:
        return (json.dumps(document, indent=2) + "\n").encode()
    import yaml

    text: str = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    return text.encode()


# -- paths on the node -------------------------------------------------------------------------
def on_host(host_root: Path, path: str) -> Path:
    """``path`` of the node, under ``host_root``, with the links of its last component
    followed inside the node's root (an absolute link names a path of the node)."""
    if not path.startswith("/"):
        raise InstallRefused(f"{path} is not an absolute path of the node")
    inside = host_root / path.lstrip("/")
    for _ in range(MAX_LINKS):
        if not inside.is_symlink():
            return inside
        target = os.readlink(inside)
        inside = (
            host_root / target.lstrip("/") if target.startswith("/") else inside.parent / target
        )
    raise InstallRefused(f"{path}: more than {MAX_LINKS} links")


def read_node_file(path: Path, shown: str) -> bytes | None:
    """The bytes of a node file; None when it does not exist."""
    try:
        return files.read_regular(path, READ_LIMIT)
    except FileNotFoundError:
        return None
    except files.FileRefused as exc:
        raise InstallRefused(f"{shown} {exc}") from None
    except OSError as exc:
        raise InstallRefused(f"{shown} cannot be read: {exc.strerror}") from None


def write_if_changed(path: Path, data: bytes, mode: int) -> bool:
    """Write ``data`` to ``path`` atomically unless it already holds it with ``mode``."""
    try:
        current = path.lstat()
    except FileNotFoundError:
        current = None
    if (
        current is not None
        and stat.S_ISREG(current.st_mode)
        and stat.S_IMODE(current.st_mode) == mode
        and files.read_regular(path, READ_LIMIT + len(data)) == data
    ):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(path, data, mode)
    return True


# -- the provider's folder ---------------------------------------------------------------------
def folder_digest(folder: Path) -> str:
    """The first 16 hex digits of the SHA-256 of every entry (path, kind, mode, content)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        if stat.S_ISLNK(info.st_mode):
            digest.update(b"l" + os.readlink(path).encode() + b"\0")
        elif stat.S_ISREG(info.st_mode):
            digest.update(b"f%o\0" % stat.S_IMODE(info.st_mode))
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        else:
            digest.update(b"d\0")
    return digest.hexdigest()[:16]


def copy_folder(source: Path, target: Path) -> None:
    """``source`` as ``target``: copied beside it, every file synced, then renamed into place."""
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, symlinks=True)
    for path in sorted(partial.rglob("*"), reverse=True):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    files.fsync_directory(partial)
    os.replace(partial, target)
    files.fsync_directory(target.parent)


def switch_link(link: Path, target: str) -> bool:
    """Point ``link`` at ``target`` with one rename (a reader sees the old or the new one)."""
    if link.is_symlink() and os.readlink(link) == target:
        return False
    if link.exists() and not link.is_symlink() and link.is_dir():
        raise InstallRefused(f"{link.name} in the bin dir is a directory")
    temp = link.with_name(f".{link.name}.link-{os.getpid()}")
    temp.unlink(missing_ok=True)
    temp.symlink_to(target)
    os.replace(temp, link)
    files.fsync_directory(link.parent)
    return True


# -- the command -------------------------------------------------------------------------------
@dataclass
class Plan:
    """Everything read and checked before anything on the node changes."""

    host_root: Path
    bin_dir: str
    kubelet_config: str
    source: Path
    entries: list[dict[str, Any]]
    api_version: str
    node_files: dict[str, bytes]
    done: list[str] = field(default_factory=list)


def source_folder(chosen: Path | None) -> Path:
    """The folder to install: ``--source``, else the frozen executable's own folder."""
    if chosen is None:
        if not getattr(sys, "frozen", False):
            raise InstallRefused("--source is needed: this is not the self-contained provider")
        chosen = Path(sys.executable).resolve().parent
    if not (chosen / PROGRAM).is_file() or not os.access(chosen / PROGRAM, os.X_OK):
        raise InstallRefused(f"{chosen} holds no executable {PROGRAM}")
    return chosen


def plan(args: argparse.Namespace) -> Plan:
    where = str(args.providers)
    data = read_node_file(args.providers, where)
    if data is None:
        raise InstallRefused(f"{where} does not exist")
    wanted = parse_config(data.decode("utf-8", "replace"), where).document
    node_files = {}
    for path in args.node_file:
        content = read_node_file(path, str(path))
        if content is None:
            raise InstallRefused(f"{path} does not exist")
        node_files[path.name] = content
    return Plan(
        host_root=args.host_root,
        bin_dir=args.bin_dir,
        kubelet_config=args.kubelet_config,
        source=source_folder(args.source),
        entries=our_entries(wanted, where),
        api_version=wanted["apiVersion"],
        node_files=node_files,
    )


def install(plan: Plan) -> list[str]:
    """Bring the node to the plan; returns one line per change (none: it already was)."""
    config_path = on_host(plan.host_root, plan.kubelet_config)
    existing = read_node_file(config_path, plan.kubelet_config)
    # Read and merged before anything is written: a refused file leaves the node as it was.
    rendered: bytes | None = None
    if existing is None:
        rendered = render(
            new_config(plan.entries, plan.api_version), plan.kubelet_config.endswith(".json")
        )
        mode = 0o644
    else:
        current = parse_config(existing.decode("utf-8", "replace"), plan.kubelet_config)
        merged = merge(current.document, plan.entries)
        merged["apiVersion"] = plan.api_version  # ours may use fields only its version has
        if merged != current.document:
            rendered = render(merged, current.json)
        mode = stat.S_IMODE(config_path.stat().st_mode)
    changes = []

    bin_dir = on_host(plan.host_root, plan.bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    folders = bin_dir / FOLDERS
    folders.mkdir(mode=0o755, exist_ok=True)
    name = folder_digest(plan.source)
    if not (folders / name / PROGRAM).is_file():
        copy_folder(plan.source, folders / name)
        changes.append(f"copied the provider into {plan.bin_dir}/{FOLDERS}/{name}")
    link = bin_dir / PROGRAM
    before = os.readlink(link) if link.is_symlink() else None
    if switch_link(link, f"{FOLDERS}/{name}/{PROGRAM}"):
        changes.append(f"{plan.bin_dir}/{PROGRAM} now runs {FOLDERS}/{name}")
    for entry in plan.entries:
        if entry["name"] != PROGRAM and switch_link(bin_dir / entry["name"], PROGRAM):
            changes.append(f"{plan.bin_dir}/{entry['name']} links to {PROGRAM}")
    # Older folders go, but the one the link named until now: a run it started may still read it.
    keep = {name, Path(before).parts[1] if before and before.startswith(f"{FOLDERS}/") else ""}
    for old in sorted(folders.iterdir()):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
            changes.append(f"removed {plan.bin_dir}/{FOLDERS}/{old.name}")

    node_dir = on_host(plan.host_root, NODE_FILES_DIR)
    for file_name, content in plan.node_files.items():
        if write_if_changed(node_dir / file_name, content, 0o600):
            changes.append(f"wrote {NODE_FILES_DIR}/{file_name}")

    if rendered is not None:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write(config_path, rendered, mode)
        names = ", ".join(entry["name"] for entry in plan.entries)
        verb = "wrote" if existing is None else "merged"
        changes.append(f"{verb} {names} into {plan.kubelet_config}")
    if existing is None:
        changes.append(
            f"the kubelet reads no {KIND} yet: start it with "
            f"--image-credential-provider-config={plan.kubelet_config} "
            f"--image-credential-provider-bin-dir={plan.bin_dir}"
        )
    elif any(line.startswith("merged ") for line in changes):
        changes.append(f"restart the kubelet: it reads {plan.kubelet_config} only when it starts")
    return changes


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(
        prog=f"{PROGRAM} {COMMAND}",
        description="Install the provider on the node whose root is mounted at --host-root and "
        "merge its entries into the kubelet's CredentialProviderConfig.",
    )
    made.add_argument("--host-root", type=Path, default=Path("/host"), help="%(default)s")
    made.add_argument(
        "--providers",
        type=Path,
        required=True,
        help="a CredentialProviderConfig holding this provider's entries (e.g. "
        "packaging/kubernetes/one-quay/credential-providers.yaml)",
    )
    made.add_argument(
        "--kubelet-config",
        default=DEFAULT_KUBELET_CONFIG,
        help="the node's --image-credential-provider-config (%(default)s)",
    )
    made.add_argument(
        "--bin-dir",
        default=DEFAULT_BIN_DIR,
        help="the node's --image-credential-provider-bin-dir (%(default)s)",
    )
    made.add_argument(
        "--node-file",
        type=Path,
        action="append",
        default=[],
        help=f"a file for {NODE_FILES_DIR}/ on the node (its config.toml, a CA bundle); repeat",
    )
    made.add_argument(
        "--source", type=Path, help="the provider's folder (default: this executable's)"
    )
    made.add_argument(
        "--watch",
        type=float,
        metavar="SECONDS",
        help="after installing, check again every SECONDS and re-apply what the node lost",
    )
    return made


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    if args.watch is not None and args.watch <= 0:
        parser().error("--watch takes a number of seconds above 0")
    # In a container this is PID 1, which the kernel spares from SIGTERM's default action.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        code = run_once(args)
        if args.watch is None:
            return code
        time.sleep(args.watch)


def run_once(args: argparse.Namespace) -> int:
    try:
        changes = install(plan(args))
    except InstallRefused as exc:
        sys.stderr.write(f"{PROGRAM} {COMMAND}: {exc}; nothing on the node was changed\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"{PROGRAM} {COMMAND}: {exc.filename}: {exc.strerror}\n")
        return 1
    for line in changes:
        sys.stdout.write(f"{PROGRAM} {COMMAND}: {line}\n")
    if not changes and args.watch is None:
        sys.stdout.write(f"{PROGRAM} {COMMAND}: the node already has it; nothing changed\n")
    sys.stdout.flush()
    return 0

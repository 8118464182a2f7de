"""Generate packaging/docker-credential-quayfed.1 (roff) from the CLI's argparse parser.

The page is the parser's own text: NAME from the package docstring, the description, every
command (nested ones too) with its description, arguments, options and examples, and the
main epilog's sections (environment, exit codes, ...) as sections of the page. The date is
the release date of the current version in CHANGELOG.md, so the output is reproducible.

    python packaging/make_manpage.py          # rewrite the committed page
    python packaging/make_manpage.py --check  # exit 1 when the committed page is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "packaging" / "docker-credential-quayfed.1"
CHANGELOG = ROOT / "CHANGELOG.md"
# Epilog sections that become sections of their own; the rest keep their own title.
SECTION_NAMES = {"environment": "ENVIRONMENT", "exit codes": "EXIT STATUS"}
SEE_ALSO = (
    r"\fBdocker\fR(1), \fBpodman\fR(1), \fBskopeo\fR(1), \fBbuildah\fR(1), "
    r"\fBcontainers\-auth.json\fR(5)"
)
# "  TAG  text", or "  TAG text" when a long tag leaves one space (as "  130 interrupted").
_ENTRY = re.compile(r"^ {1,4}(\S.*?)\s{2,}(\S.*)$|^ {1,4}(\S+) (\S.*)$")


def escape(text: str) -> str:
    """Text safe in roff: backslashes, minus signs, and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def bold(text: str) -> str:
    return f"\\fB{escape(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{escape(text)}\\fR"


def paragraphs(text: str) -> list[str]:
    """Prose wrapped in the source, as one line per paragraph (roff fills them again)."""
    blocks = re.split(r"\n\s*\n", text.strip())
    return [" ".join(line.strip() for line in block.splitlines()) for block in blocks if block]


def epilog_sections(epilog: str) -> Iterator[tuple[str, list[str]]]:
    """("title", indented lines) for each "title:" line of an epilog and what follows it."""
    title: str | None = None
    body: list[str] = []
    for line in epilog.rstrip().splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            if title is not None:
                yield title, body
            title, body = line.rstrip()[:-1], []
        elif line.strip():
            body.append(line)
    if title is not None:
        yield title, body


def tagged_entries(lines: Sequence[str]) -> list[tuple[str, str]]:
    """("tag", "text") for "  TAG  text" lines; deeper-indented lines continue the text."""
    entries: list[tuple[str, str]] = []
    for line in lines:
        match = _ENTRY.match(line)
        if match:
            tag, text = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
            entries.append((tag, text))
        elif entries:
            tag, text = entries[-1]
            entries[-1] = (tag, f"{text} {line.strip()}")
        else:
            entries.append((line.strip(), ""))
    return entries


def example_block(lines: Sequence[str]) -> list[str]:
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    return [".PP", ".RS 4", ".nf", *(escape(line[indent:]) for line in lines), ".fi", ".RE"]


def section_body(title: str, lines: Sequence[str]) -> list[str]:
    if title.lower().startswith("example"):
        return example_block(lines)
    out: list[str] = []
    for tag, text in tagged_entries(lines):
        out += [".TP", bold(tag), escape(text)]
    return out


def argument_label(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(bold(name) for name in action.option_strings)
        if action.nargs == 0:
            return names
        metavar = action.metavar or action.dest.upper()
    else:
        names = ""
        metavar = action.metavar or action.dest
    shape = {"?": "[{0}]", "*": "[{0} ...]", "+": "{0} [{0} ...]"}.get(str(action.nargs), "{0}")
    label = italic(shape.format(metavar))
    return f"{names} {label}" if names else label


def expand_help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        text = text % {**vars(action), "prog": prog}
    return text


def argument_entries(parser: argparse.ArgumentParser, with_help: bool = True) -> list[str]:
    out: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._HelpAction) and not with_help:
            continue
        out += [".TP", argument_label(action), escape(expand_help(action, parser.prog))]
    return out


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(name path, parser) for every command below ``parser``, depth first, in order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield name, child
                for path, grandchild in subcommands(child):
                    yield f"{name} {path}", grandchild


def usage_line(parser: argparse.ArgumentParser) -> str:
    usage = " ".join(parser.format_usage().split())
    return usage.removeprefix("usage: ")


def command_section(path: str, parser: argparse.ArgumentParser) -> list[str]:
    out = [f'.SS "{escape(path)}"', ".PP", bold(usage_line(parser))]
    for paragraph in paragraphs(parser.description or ""):
        out += [".PP", escape(paragraph)]
    out += argument_entries(parser, with_help=False)  # OPTIONS says -h once for all
    for title, lines in epilog_sections(parser.epilog or ""):
        out += [".PP", bold(title.capitalize() + ":"), *section_body(title, lines)]
    return out


def release_date(version: str) -> str:
    """The date of ``## [version] - YYYY-MM-DD`` in CHANGELOG.md, or "" when unreleased."""
    pattern = re.compile(rf"^## \[{re.escape(version)}\] - (\d{{4}}-\d{{2}}-\d{{2}})", re.M)
    match = pattern.search(CHANGELOG.read_text(encoding="utf-8")) if CHANGELOG.exists() else None
    return match.group(1) if match else ""


def configuration_section() -> list[str]:
    """Each setting of a registry table and each token source, from the code's declarations."""
    from docker_credential_quayfed.config import settings_reference
    from docker_credential_quayfed.sources import BY_NAME, SOURCES

    out = [
        ".SH CONFIGURATION",
        ".PP",
        escape('One [registries."HOST"] table per registry in the TOML configuration file.'),
    ]
    for name, meaning, default, need in settings_reference(BY_NAME):
        out += [
            ".TP",
            bold(name),
            escape(f"{meaning.replace('`', '')} (default {default}; {need})"),
        ]
    out += [".PP", escape("Token sources (source = NAME):")]
    for source in SOURCES:
        out += [".TP", bold(source.name), escape(source.summary)]
    return out


def render() -> str:
    sys.path.insert(0, str(ROOT))
    import docker_credential_quayfed
    from docker_credential_quayfed.commands import build_parser
    from docker_credential_quayfed.paths import APP_NAME as PROGRAM

    parser = build_parser()
    version = docker_credential_quayfed.__version__
    summary = (docker_credential_quayfed.__doc__ or "").split(":", 1)[-1].strip().rstrip(".")
    title = PROGRAM.upper()
    out = [
        f'.\\" Generated by packaging/make_manpage.py from {PROGRAM} --help; do not edit.',
        f'.TH "{escape(title)}" "1" "{release_date(version)}" '
        f'"{escape(PROGRAM)} {version}" "User Commands"',
        ".nh",  # no hyphenation: option names and paths must stay whole
        ".ad l",
        ".SH NAME",
        f"{escape(PROGRAM)} \\- {escape(summary)}",
        ".SH SYNOPSIS",
        bold(usage_line(parser)),
        ".SH DESCRIPTION",
    ]
    for paragraph in paragraphs(parser.description or ""):
        out += [".PP", escape(paragraph)]
    out += [".SH OPTIONS", *argument_entries(parser), ".SH COMMANDS"]
    for path, child in subcommands(parser):
        out += command_section(path, child)
    for section, lines in epilog_sections(parser.epilog or ""):
        heading = SECTION_NAMES.get(section.lower(), section.split(" (")[0].upper())
        out += [f'.SH "{escape(heading)}"', *section_body(section, lines)]
    out += configuration_section()
    out += [".SH SEE ALSO", SEE_ALSO]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    cli.add_argument("--check", action="store_true", help="fail when the page is stale")
    cli.add_argument("--output", type=Path, default=PAGE, help="%(default)s")
    args = cli.parse_args(argv)
    page = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != page:
            print(f"{args.output} is stale: run python packaging/make_manpage.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(page, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""
The C{railgun} command line: administrative subcommands that run without a
reactor (the roles themselves run under C{twistd railgun}).

Each subcommand is a L{_Command}: a name, a one-line help, a function that
adds its arguments to a parser and a function that runs it.  To add one,
write those two functions and append a L{_Command} to L{_COMMANDS}.

Exit status: 0 on success, 1 when the command fails, 2 for a usage error.
Errors are one line on standard error.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, NoReturn

from attrs import frozen

from railgun import __version__
from railgun.certs import (
    CA_FILE,
    CA_KEY_FILE,
    EDGE_FILE,
    MAX_DAYS,
    ORIGIN_FILE,
    DeploymentError,
    generateDeployment,
    parseOriginName,
    writeDeployment,
)

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

PROGRAM = "railgun"


class CommandError(Exception):
    """
    A subcommand failed; the message is shown to the user as is.
    """


class _UsageError(Exception):
    """
    The command line was wrong; raised instead of argparse's exit.
    """

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog
        self.message = message


class _Exit(Exception):
    """
    argparse asked to exit (after C{--help}); raised instead of L{SystemExit}.
    """

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """
    An argument parser that reports instead of exiting, so that L{main} owns
    the exit status and the output streams (and tests can call it).
    """

    def __init__(self, *args: object, stdout: IO[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._stdout = stdout

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self.prog, message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._stdout.write(message)
        raise _Exit(status)

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        super().print_help(file if file is not None else self._stdout)

    def print_usage(self, file: SupportsWrite[str] | None = None) -> None:
        super().print_usage(file if file is not None else self._stdout)


@frozen
class _Command:
    """
    One subcommand.

    @ivar name: What the user types after C{railgun}.
    @ivar help: One line for C{railgun --help}.
    @ivar configure: Adds the subcommand's arguments to its parser.
    @ivar run: Runs it with the parsed arguments, writing its report to the
        stream; raises L{CommandError} on failure.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, IO[str]], None]


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_DAYS}")
    return days


def _originName(text: str) -> str:
    try:
        parseOriginName(text)
    except DeploymentError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _configureCerts(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Create a private CA, an origin-role certificate and an edge "
        "certificate for a new deployment, in DIR."
    )
    parser.add_argument("directory", metavar="DIR", help="where to write the files")
    parser.add_argument(
        "--origin-name",
        metavar="NAME",
        type=_originName,
        default="localhost",
        help="DNS name or IP address the edge dials to reach the origin role "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--days",
        metavar="N",
        type=_days,
        default=3650,
        help="validity of the certificates in days (default: %(default)s)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace existing files in DIR"
    )


#: The link port in the command lines that C{railgun certs} prints.
_LINK_PORT = 2408

#: The shell command that makes the token file: 64 random hex digits, mode
#: 0600.
_TOKEN_COMMAND = (
    "(umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > {path})"
)


def _linkEnds(originName: str) -> tuple[list[str], str]:
    """
    How the origin role listens and how the edge dials it, for the command
    lines printed by C{railgun certs}.

    @param originName: the name in the origin role's certificate, already
        checked by L{parseOriginName}.
    @return: the origin role's extra arguments (none for C{localhost} or
        C{127.0.0.1}: the default listens on loopback; otherwise every
        interface) and the edge's link address (that name, which the
        certificate names, so no C{--tls-name} is needed).
    """
    try:
        address = ipaddress.ip_address(originName)
    except ValueError:
        address = None
    if originName.lower().rstrip(".") == "localhost" or originName == "127.0.0.1":
        return [], f"{originName}:{_LINK_PORT}"
    if address is not None and address.version == 6:
        return ["--link-listen", f"tcp6:{_LINK_PORT}"], f"[{address}]:{_LINK_PORT}"
    return ["--link-listen", f"tcp:{_LINK_PORT}"], f"{originName}:{_LINK_PORT}"


def _runCerts(arguments: argparse.Namespace, out: IO[str]) -> None:
    try:
        deployment = generateDeployment(arguments.origin_name, arguments.days)
        writeDeployment(deployment, arguments.directory, force=arguments.force)
    except DeploymentError as e:
        raise CommandError(str(e)) from e
    directory = os.path.abspath(arguments.directory)

    def path(name: str) -> str:
        return os.path.join(directory, name)

    tokenPath = path("token")
    listen, linkAddress = _linkEnds(arguments.origin_name)

    def twistd(role: str, *extra: str) -> str:
        return shlex.join(
            ["twistd", "--pidfile=", "-n", "railgun", "--role", role]
            + ["--certs", directory, "--token-file", tokenPath, *extra]
        )

    originCommand = twistd(
        "origin", *listen, "--map", "www.example.com=http://127.0.0.1:8000"
    )
    edgeCommand = twistd("edge", "--link", f"www.example.com={linkAddress}")
    out.write(
        f"Wrote {path(CA_FILE)}: the CA certificate (both roles need it)\n"
        f"Wrote {path(CA_KEY_FILE)}: the CA private key (only to issue more "
        "certificates; keep it offline)\n"
        f"Wrote {path(ORIGIN_FILE)}: the origin role's certificate and key, "
        f"for {arguments.origin_name}\n"
        f"Wrote {path(EDGE_FILE)}: the edge's certificate and key\n"
        f"Certificates are valid for {arguments.days} days.\n"
        "\n"
        "Make the link token both roles share (once):\n"
        f"  {_TOKEN_COMMAND.format(path=shlex.quote(tokenPath))}\n"
        f"Origin role (needs {CA_FILE}, {ORIGIN_FILE} and token; --map sends "
        "each site to your origin server's URL):\n"
        f"  {originCommand}\n"
        f"Edge (needs {CA_FILE}, {EDGE_FILE} and token; it dials the origin "
        f"role as {arguments.origin_name}, the name in its certificate; clients "
        "reach it on http://127.0.0.1:8080/):\n"
        f"  {edgeCommand}\n"
        "On other machines, copy those files and adjust the paths; see "
        "docs/security.md.\n"
    )


_COMMANDS: tuple[_Command, ...] = (
    _Command(
        name="certs",
        help="create the CA and certificates for a new deployment",
        configure=_configureCerts,
        run=_runCerts,
    ),
)


def _parser(stdout: IO[str]) -> _Parser:
    parser = _Parser(
        prog=PROGRAM,
        description="Railgun for Twisted: administrative commands.",
        epilog="The roles themselves run under 'twistd railgun'.",
        stdout=stdout,
    )
    parser.add_argument(
        "--version", action="store_true", help="print Railgun's version and exit"
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    for command in _COMMANDS:
        subparser = subparsers.add_parser(
            command.name, help=command.help, stdout=stdout
        )
        command.configure(subparser)
        subparser.set_defaults(run=command.run)
    return parser


def main(
    argv: Sequence[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """
    Run the C{railgun} command line.

    @param argv: The arguments after the program name; defaults to
        C{sys.argv[1:]}.
    @param stdout: Where reports and help go; defaults to C{sys.stdout}.
    @param stderr: Where the one-line error goes; defaults to C{sys.stderr}.

    @return: The exit status: 0 on success, 1 on failure, 2 on a usage error.
    """
    if argv is None:
        argv = sys.argv[1:]
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    parser = _parser(out)
    try:
        arguments = parser.parse_args(list(argv))
    except _Exit as e:
        return e.status
    except _UsageError as e:
        err.write(f"{e.prog}: error: {e.message} (see '{e.prog} --help')\n")
        return EXIT_USAGE
    if arguments.version:
        out.write(f"{PROGRAM} {__version__}\n")
        return EXIT_OK
    if arguments.command is None:
        err.write(f"{PROGRAM}: error: no command given (see '{PROGRAM} --help')\n")
        return EXIT_USAGE
    try:
        arguments.run(arguments, out)
    except CommandError as e:
        err.write(f"{PROGRAM} {arguments.command}: error: {e}\n")
        return EXIT_FAILURE
    return EXIT_OK


__all__ = ["CommandError", "main"]

"""``nni-ext ss_gen``: export a search space as NNI JSON, list spaces, or run a trial in declare mode."""
from __future__ import annotations

import argparse
import shlex

from ..ss_gen import DEFAULT_FILE, run_trial_command, write_search_space
from .common import check_output_path, parse_space_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ss_gen", help="export a search space as NNI search-space JSON",
                       description="Write a search space as NNI JSON ({label: {_type: choice, _value: [...]}}).")
    p.add_argument("space", nargs="?", help="registered space name (see --list) or module:attr")
    p.add_argument("-o", "--output", default=DEFAULT_FILE, help=f"output file (default: {DEFAULT_FILE})")
    p.add_argument("-t", "--trial-command", help='run this trial command in search-space mode, e.g. "python tester.py"')
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the trial command (default 600)")
    p.add_argument("--space-arg", action="append", default=[], metavar="KEY=VALUE", help="space keyword argument")
    p.add_argument("--list", action="store_true", help="list the registered spaces and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import NniExtError
    from ..spaces import create_space, list_spaces

    if args.list:
        for name in list_spaces():
            space = create_space(name)
            print(f"{name}\t{len(space.labels)} labels\t{type(space).__doc__.strip().splitlines()[0]}")
        return 0
    if not (args.trial_command or args.space):
        raise NniExtError("give a SPACE (see `nni-ext ss_gen --list`) or -t \"TRIAL COMMAND\"")
    check_output_path(args.output, "-o/--output", example_name=DEFAULT_FILE)
    if args.trial_command:
        try:
            shlex.split(args.trial_command)
        except ValueError as exc:  # "No closing quotation", "No escaped character"
            raise NniExtError(f"-t/--trial-command {args.trial_command!r} cannot be split into arguments ({exc}); "
                              "it is split like a shell line: close every quote inside it, e.g. "
                              "-t \"python3 trial.py --note 'a b'\"") from None
        path = run_trial_command(args.trial_command, args.output, timeout=args.timeout)
    else:
        space = create_space(args.space, **parse_space_args(args.space_arg))
        try:
            path = write_search_space(space, args.output)
        except OSError as exc:
            raise NniExtError(f"cannot write -o/--output {args.output}: {exc.strerror}; choose a writable "
                              "file path") from None
    print(f"search space written to {path}")
    return 0

"""``nni-ext cost``: FLOPs/params/activations/tiny_ml (and latency) of an architecture; cost and latency tables."""
from __future__ import annotations

import argparse
import json

from .common import check_output_path, parse_space_args


def _space_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="registered space name or module:attr")
    p.add_argument("--input-size", type=int, default=None, help="input resolution in pixels (default: the space's)")
    p.add_argument("--space-arg", action="append", default=[], metavar="KEY=VALUE", help="space keyword argument")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="FLOPs (MACs), params, activations, tiny_ml and latency of an architecture",
                       description="Print {flops, params, activations, peak_activation_bytes, tiny_ml, ...} of an "
                                   "architecture as JSON. FLOPs are multiply-accumulates (the SPOS/OFA convention); "
                                   "activations are the output elements of conv/linear/BN/pooling/flatten layers "
                                   "(CNAS); peak_activation_bytes the largest input+output float32 working set of "
                                   "one such layer. Also: `nni-ext cost build-table SPACE` and `nni-ext cost "
                                   "build-latency-table SPACE`.")
    _space_options(p)
    p.add_argument("--arch", help="architecture JSON file (label -> value); default: the space's official one "
                                  "where it has one")
    p.add_argument("--exact", action="store_true", help="count the built network instead of the lookup table")
    p.add_argument("--tiny-ml", action="append", default=[], metavar="KEY=VALUE",
                   help="tiny_ml parameter (pmax, mmax, amax in millions; wp, wm, wa, pen), e.g. --tiny-ml pmax=2.2; "
                        "default: CNAS's (pmax 2, mmax 1e10, amax 5, wp 1, wm 1/40, wa 1, pen 1e10)")
    p.add_argument("--latency-table", help="per-layer latency table (YAML/JSON, OFA layout; see build-latency-table)")
    p.add_argument("--measure-latency", action="store_true", help="time the network on --device")
    p.add_argument("--device", default="auto", help="device for --measure-latency (auto, cpu, cuda, cuda:1)")
    p.add_argument("--repeats", type=int, default=50, help="timed repeats for --measure-latency (default 50)")
    p.set_defaults(func=run)


def add_table_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-table", help="build (and cache) the FLOPs/params lookup table of a space")
    _space_options(p)
    p.add_argument("-o", "--output", help="also write the table to this JSON file")
    p.set_defaults(func=run_build_table)
    q = sub.add_parser("build-latency-table", help="time every layer of a space on this device")
    _space_options(q)
    q.add_argument("-o", "--output", required=True, help="output YAML (OFA's latency-table layout)")
    q.add_argument("--device", default="auto")
    q.add_argument("--repeats", type=int, default=20)
    q.add_argument("--warmup", type=int, default=5)
    q.set_defaults(func=run_build_latency_table)


def _check_input_size(args: argparse.Namespace) -> None:
    """``--input-size`` must be a positive number of pixels (0 used to fall back to the default silently)."""
    from ..errors import NniExtError

    if args.input_size is not None and args.input_size < 1:
        raise NniExtError(f"--input-size {args.input_size} must be a positive number of pixels, e.g. --input-size "
                          "224; leave it out to use the space's default")


def run(args: argparse.Namespace) -> int:
    from ..cost import CostTable, LatencyTable, count, measure_latency
    from ..errors import NniExtError
    from ..spaces import create_space
    from ..trial import load_architecture

    _check_input_size(args)
    tiny = _tiny_ml(args.tiny_ml)
    space = create_space(args.space, **parse_space_args(args.space_arg))
    if args.arch:
        arch = space.validate(load_architecture(args.arch))
    elif hasattr(space, "official_architecture"):
        arch = space.official_architecture()
    else:
        raise NniExtError(f"space {space.name!r} has no default architecture; give --arch ARCH.json")
    own_size = getattr(space, "input_size_of", None)  # OFA: the architecture's resolution r
    size = args.input_size if args.input_size is not None else (
        own_size(arch) if own_size is not None else space.default_input_size)
    if args.exact:
        cost = count(space.build(arch), size)
    else:
        cost = CostTable.cached(space, size).cost(arch)
    out: dict[str, object] = {"flops": cost.flops, "params": cost.params, "activations": cost.activations,
                              "peak_activation_bytes": cost.peak_activation_bytes,
                              "tiny_ml": tiny.score(cost.params, cost.flops, cost.activations),
                              "space": space.name, "input_size": size,
                              "method": "exact" if args.exact else "table", "flops_unit": "multiply-accumulates"}
    if args.latency_table:
        out["latency_table_ms"] = LatencyTable.load(args.latency_table).predict(space.latency_keys(arch, size))
    if args.measure_latency:
        lat = measure_latency(space.build(arch), size, device=args.device, repeats=args.repeats)
        out["latency_ms"] = lat.median_ms
        out["latency_device"] = lat.device
    print(json.dumps(out))
    return 0


def _tiny_ml(pairs: list[str]) -> object:
    """The ``TinyML`` of ``--tiny-ml KEY=VALUE`` options; a bad key or value is a one-line error."""
    from ..cost.tiny_ml import TinyML
    from ..errors import NniExtError

    given: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            given[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise NniExtError(f"--tiny-ml {pair!r}: write KEY=NUMBER, e.g. --tiny-ml pmax=2.2")
    try:
        return TinyML.from_mapping(given, "--tiny-ml")
    except ValueError as exc:
        raise NniExtError(str(exc)) from None


def run_build_table(args: argparse.Namespace) -> int:
    from ..cost import CostTable
    from ..spaces import create_space

    _check_input_size(args)
    if args.output:
        check_output_path(args.output, "-o/--output", example_name="cost_table.json")
    space = create_space(args.space, **parse_space_args(args.space_arg))
    table = CostTable.cached(space, args.input_size)
    if args.output:
        table.save(args.output)
    print(f"cost table of {space.name} at {table.input_size}px: {len(table.entries)} units"
          + (f", written to {args.output}" if args.output else ""))
    return 0


def run_build_latency_table(args: argparse.Namespace) -> int:
    from ..cost import build_latency_table
    from ..spaces import create_space

    _check_input_size(args)
    check_output_path(args.output, "-o/--output", example_name="latency_table.yaml")
    space = create_space(args.space, **parse_space_args(args.space_arg))
    table = build_latency_table(space, args.input_size, device=args.device, warmup=args.warmup, repeats=args.repeats)
    table.save(args.output)
    print(f"latency table with {len(table)} layers written to {args.output}")
    return 0

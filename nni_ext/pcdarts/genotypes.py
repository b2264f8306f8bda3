"""DARTS genotypes: derivation from architecture weights, published registry, safe parsing, loading, writing."""
from __future__ import annotations

import ast
import json
import keyword
import os
import re
from collections import namedtuple
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._io import atomic_write_text
from .operations import PRIMITIVES

__all__ = ["GENOTYPES", "Genotype", "derive_genotype", "genotype_from_dict", "genotype_name", "genotype_to_dict",
           "load_genotype", "parse_genotype", "validate_genotype", "write_genotypes_py"]

#: A discrete cell pair: ``normal``/``reduce`` list ``(op, input)`` per edge, two edges per intermediate node
#: (inputs 0 and 1 are the cell inputs, ``k >= 2`` the k-th state); ``*_concat`` the states concatenated.
Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

_FIELDS = Genotype._fields
_NONE = PRIMITIVES.index("none")


def validate_genotype(genotype: Any) -> Genotype:
    """Check a genotype and return it in canonical form (lists of ``(str, int)`` tuples, concat as ``list[int]``).

    Accepts a :class:`Genotype`, any object with the four fields, or a mapping with the four keys; ``range``
    concat values become lists so that genotypes from any source compare equal.

    Raises:
        ValueError: naming the bad field, operation name or input index.
    """
    if isinstance(genotype, Mapping):
        missing = [f for f in _FIELDS if f not in genotype]
        if missing:
            raise ValueError(f"genotype: missing key(s) {missing}; a genotype needs {list(_FIELDS)}")
        values = {f: genotype[f] for f in _FIELDS}
    else:
        try:
            values = {f: getattr(genotype, f) for f in _FIELDS}
        except AttributeError as exc:
            raise ValueError(f"genotype: expected a Genotype or a dict with keys {list(_FIELDS)}, "
                             f"got {type(genotype).__name__}") from exc
    out: dict[str, Any] = {}
    for cell in ("normal", "reduce"):
        edges = values[cell]
        if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence) or not edges or len(edges) % 2:
            raise ValueError(f"genotype: {cell!r} must be a non-empty list of (op, input) pairs, two per node; "
                             f"got {edges!r}")
        canon: list[tuple[str, int]] = []
        for pos, edge in enumerate(edges):
            if isinstance(edge, (str, bytes)) or not isinstance(edge, Sequence) or len(edge) != 2:
                raise ValueError(f"genotype: {cell}[{pos}]={edge!r} must be an (op, input) pair")
            op, inp = edge
            if op not in PRIMITIVES:
                raise ValueError(f"genotype: {cell}[{pos}] has unknown operation {op!r}; "
                                 f"use one of {', '.join(PRIMITIVES)}")
            node = pos // 2
            if isinstance(inp, bool) or not isinstance(inp, (int, np.integer)) or not 0 <= inp <= node + 1:
                raise ValueError(f"genotype: {cell}[{pos}] input {inp!r} is invalid; the edge belongs to "
                                 f"intermediate node {node} whose inputs are 0..{node + 1}")
            canon.append((str(op), int(inp)))
        steps = len(canon) // 2
        concat = values[f"{cell}_concat"]
        try:
            concat_list = [int(i) for i in concat]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"genotype: {cell}_concat={concat!r} must be a list of state indices") from exc
        if not concat_list or any(not 0 <= i <= steps + 1 for i in concat_list):
            raise ValueError(f"genotype: {cell}_concat={concat!r} must list state indices in 0..{steps + 1}")
        out[cell] = canon
        out[f"{cell}_concat"] = concat_list
    return Genotype(**out)


def _weights_array(weights: Any, name: str) -> np.ndarray:
    if hasattr(weights, "detach"):
        weights = weights.detach().cpu().numpy()
    arr = np.asarray(weights, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != len(PRIMITIVES):
        raise ValueError(f"derive_genotype: {name} has shape {arr.shape}; expected (num_edges, {len(PRIMITIVES)}), "
                         f"one column per operation of PRIMITIVES")
    return arr


def _derive_cell(weights: np.ndarray, steps: int) -> list[tuple[str, int]]:
    gene: list[tuple[str, int]] = []
    start = 0
    for node in range(steps):
        n_in = node + 2
        w = weights[start:start + n_in].copy()
        w[:, _NONE] = -np.inf  # never pick `none`, neither to rank edges nor as the edge's operation
        strength = w.max(axis=1)
        edges = sorted(range(n_in), key=lambda j: -strength[j])[:2]  # stable: ties keep the lower input
        for j in edges:
            gene.append((PRIMITIVES[int(np.argmax(w[j]))], j))
        start += n_in
    return gene


def derive_genotype(weights_normal: Any, weights_reduce: Any, *, steps: int = 4, multiplier: int = 4) -> Genotype:
    """Discretise per-edge operation weights into a genotype with the DARTS rule.

    For each intermediate node keep the two incoming edges whose strongest non-``none`` operation has the
    largest weight, and on each kept edge the strongest non-``none`` operation.

    Args:
        weights_normal: ``(num_edges, len(PRIMITIVES))`` weights of the normal cell (numpy array or tensor),
            e.g. softmax(alpha) times the normalised edge betas of PC-DARTS; ``num_edges = 14`` for 4 steps.
        weights_reduce: the same for the reduction cell.
        steps: number of intermediate nodes.
        multiplier: number of last states concatenated as the cell output.

    Raises:
        ValueError: if a weight matrix has the wrong shape or ``steps``/``multiplier`` are inconsistent.
    """
    if steps < 1:
        raise ValueError(f"derive_genotype: steps={steps} must be >= 1")
    if not 1 <= multiplier <= steps:
        raise ValueError(f"derive_genotype: multiplier={multiplier} must be in 1..steps ({steps})")
    num_edges = steps * (steps + 3) // 2
    wn = _weights_array(weights_normal, "weights_normal")
    wr = _weights_array(weights_reduce, "weights_reduce")
    for name, arr in (("weights_normal", wn), ("weights_reduce", wr)):
        if arr.shape[0] != num_edges:
            raise ValueError(f"derive_genotype: {name} has {arr.shape[0]} edges but steps={steps} needs {num_edges}")
    concat = list(range(2 + steps - multiplier, steps + 2))
    return Genotype(normal=_derive_cell(wn, steps), normal_concat=concat,
                    reduce=_derive_cell(wr, steps), reduce_concat=list(concat))


# Published cells (values exactly as in quark0/darts and yuhuixu1993/PC-DARTS; concat ranges written as lists).
GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": Genotype(
        normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
        reduce_concat=[2, 3, 4, 5]),
    "DARTS_V2": Genotype(
        normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
        reduce_concat=[2, 3, 4, 5]),
    "PC_DARTS_cifar": Genotype(
        normal=[("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
                ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
        reduce_concat=[2, 3, 4, 5]),
    "PC_DARTS_image": Genotype(
        normal=[("skip_connect", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 0), ("skip_connect", 1),
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("dil_conv_5x5", 4)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 2), ("max_pool_3x3", 1),
                ("sep_conv_3x3", 2), ("sep_conv_3x3", 1), ("sep_conv_5x5", 0), ("sep_conv_3x3", 3)],
        reduce_concat=[2, 3, 4, 5]),
}
GENOTYPES["DARTS"] = GENOTYPES["DARTS_V2"]
GENOTYPES["PC_DARTS"] = GENOTYPES["PC_DARTS_cifar"]


_OBJECTIVE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def genotype_name(objective: str, nu: float) -> str:
    """MOOD-NAS-style name of the genotype found with regulariser ``objective`` and weight ``nu``.

    The weight is written as its mantissa digits, ``e`` and the two-digit (negative) exponent, so the
    name is a valid Python identifier.

    Examples:
        >>> genotype_name("l1", 0.2), genotype_name("l2", 3e-6), genotype_name("l1", 0), genotype_name("l1", 2.5e-3)
        ('l1_loss_2e01', 'l2_loss_3e06', 'l1_loss_0', 'l1_loss_25e03')

    Raises:
        ValueError: if ``objective`` is not an identifier-like word or ``nu`` is negative or >= 10.
    """
    if not isinstance(objective, str) or not _OBJECTIVE_RE.match(objective):
        raise ValueError(f"genotype_name: objective={objective!r} must be a word of letters, digits and '_' "
                         f"(e.g. 'l1')")
    nu = float(nu)
    if not np.isfinite(nu) or nu < 0:
        raise ValueError(f"genotype_name: nu={nu!r} must be a finite number >= 0")
    if nu == 0:
        return f"{objective}_loss_0"
    mantissa, exponent = f"{nu:.6e}".split("e")
    exp = int(exponent)
    if exp > 0:
        raise ValueError(f"genotype_name: nu={nu!r} must be < 10 (names encode a non-positive exponent)")
    digits = mantissa.rstrip("0").rstrip(".").replace(".", "")
    return f"{objective}_loss_{digits}e{-exp:02d}"


def genotype_to_dict(genotype: Genotype) -> dict[str, list]:
    """JSON-able form ``{"normal": [[op, input], ...], "normal_concat": [...], "reduce": ..., ...}``."""
    g = validate_genotype(genotype)
    return {"normal": [[op, i] for op, i in g.normal], "normal_concat": list(g.normal_concat),
            "reduce": [[op, i] for op, i in g.reduce], "reduce_concat": list(g.reduce_concat)}


def genotype_from_dict(data: Mapping[str, Any]) -> Genotype:
    """Inverse of :func:`genotype_to_dict` (validated).

    Raises:
        ValueError: if a key is missing or an operation/input is invalid.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"genotype_from_dict: expected a dict with keys {list(_FIELDS)}, got {type(data).__name__}")
    return validate_genotype(data)


def _literal(node: ast.expr, where: str) -> Any:
    """Literal value of ``node``; ``range(a[, b[, c]])`` of int literals is accepted and expanded to a list."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("range", "list") \
            and not node.keywords:
        if node.func.id == "list" and len(node.args) == 1:
            return list(_literal(node.args[0], where))
        if node.func.id == "range" and 1 <= len(node.args) <= 3:
            args = [_literal(a, where) for a in node.args]
            if all(isinstance(a, int) and not isinstance(a, bool) for a in args):
                return list(range(*args))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError) as exc:
        raise ValueError(f"{where}: {ast.unparse(node)!r} is not a literal (only lists, tuples, numbers, strings "
                         f"and range(...) are allowed)") from exc


def _is_genotype_call(node: ast.Call) -> bool:
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "Genotype") or \
        (isinstance(func, ast.Attribute) and func.attr == "Genotype")


def _genotype_from_call(node: ast.expr, where: str) -> Genotype:
    if not (isinstance(node, ast.Call) and _is_genotype_call(node)):
        raise ValueError(f"{where}: expected 'Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)'")
    if len(node.args) > len(_FIELDS):
        raise ValueError(f"{where}: Genotype takes at most {len(_FIELDS)} arguments")
    values: dict[str, Any] = {}
    for field, arg in zip(_FIELDS, node.args):
        values[field] = _literal(arg, where)
    for kw in node.keywords:
        if kw.arg not in _FIELDS:
            raise ValueError(f"{where}: unknown Genotype field {kw.arg!r}; fields are {list(_FIELDS)}")
        if kw.arg in values:
            raise ValueError(f"{where}: Genotype field {kw.arg!r} given twice")
        values[kw.arg] = _literal(kw.value, where)
    try:
        return validate_genotype(values)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def parse_genotype(text: str) -> Genotype:
    """Parse ``repr(genotype)``, e.g. ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), ...)``.

    The text is parsed with :mod:`ast`, never evaluated; only literals and ``range(...)`` are accepted.

    Raises:
        ValueError: for a syntax error, a non-literal value, or an invalid operation name or input.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"parse_genotype: not a Genotype(...) expression ({exc.msg}): {text[:80]!r}") from None
    return _genotype_from_call(tree.body, "parse_genotype")


def _genotypes_in_py(path: Path) -> dict[str, Genotype]:
    """Top-level ``NAME = Genotype(...)`` (and ``ALIAS = NAME``) assignments of a Python file, never executed."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise ValueError(f"load_genotype: {path} is not valid Python (line {exc.lineno}: {exc.msg})") from None
    found: dict[str, Genotype] = {}
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            continue
        name, value = stmt.targets[0].id, stmt.value
        if isinstance(value, ast.Call) and _is_genotype_call(value):
            found[name] = _genotype_from_call(value, f"load_genotype: {path}:{stmt.lineno} ({name})")
        elif isinstance(value, ast.Name) and value.id in found:
            found[name] = found[value.id]
    return found


def _pick(named: Mapping[str, Genotype], key: str | None, source: str) -> Genotype:
    if key is None:
        if len(named) == 1:
            return next(iter(named.values()))
        raise ValueError(f"load_genotype: {source} holds {len(named)} genotypes; choose one with "
                         f"'{source}:NAME', NAME one of {', '.join(sorted(named)) or '(none)'}")
    if key not in named:
        known = ", ".join(sorted(named)) or "(none)"
        raise ValueError(f"load_genotype: no genotype {key!r} in {source}; known: {known}")
    return named[key]


def _split_file_spec(spec: str) -> tuple[Path, str | None] | None:
    """``file.json`` / ``file.py`` with an optional ``:NAME``; None if ``spec`` does not name such a file."""
    path, key = spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and head.lower().endswith((".json", ".py")) and tail and "/" not in tail and "\\" not in tail:
        path, key = head, tail
    if path.lower().endswith((".json", ".py")):
        return Path(path), key
    return None


def load_genotype(name_or_file: str | os.PathLike | Genotype) -> Genotype:
    """Resolve a genotype from a registry name or a file.

    Args:
        name_or_file: one of

            * a name in :data:`GENOTYPES` (``"DARTS_V2"``, ``"PC_DARTS_cifar"``, ...);
            * ``file.json``: a single genotype dict (as :func:`genotype_to_dict`), or a dict ``name -> genotype``
              holding exactly one entry; ``file.json:NAME`` picks entry ``NAME`` of such a dict;
            * ``file.py:NAME``: the line ``NAME = Genotype(...)`` of a Python genotypes file (as written by
              :func:`write_genotypes_py` or DARTS' ``genotypes.py``), parsed with :mod:`ast`, never imported;
              ``file.py`` alone works when it defines exactly one genotype;
            * a :class:`Genotype`, returned validated.

    Raises:
        ValueError: for an unknown name (the message lists the known names), a missing file, or an invalid genotype.
    """
    if isinstance(name_or_file, tuple) and hasattr(name_or_file, "_fields"):
        return validate_genotype(name_or_file)
    spec = os.fspath(name_or_file)
    file_spec = _split_file_spec(spec)
    if file_spec is None:
        if spec in GENOTYPES:
            return GENOTYPES[spec]
        raise ValueError(f"load_genotype: unknown genotype {spec!r}; use one of {', '.join(sorted(GENOTYPES))}, "
                         f"a JSON file (file.json or file.json:NAME) or a genotypes file (file.py:NAME)")
    path, key = file_spec
    if not path.is_file():
        raise ValueError(f"load_genotype: file {str(path)!r} not found (from {spec!r})")
    if path.suffix.lower() == ".py":
        return _pick(_genotypes_in_py(path), key, str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"load_genotype: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"load_genotype: {path} must hold a genotype dict or a dict name -> genotype")
    if "normal" in data:
        if key is not None:
            raise ValueError(f"load_genotype: {path} holds a single genotype; drop ':{key}'")
        return genotype_from_dict(data)
    named = {}
    for name, value in data.items():
        try:
            named[name] = genotype_from_dict(value)
        except ValueError as exc:
            if key is None or key == name:
                raise ValueError(f"load_genotype: {path}:{name}: {exc}") from None
    return _pick(named, key, str(path))


_PY_HEADER = '''"""DARTS genotypes written by nni-ext; import them (``from genotypes import NAME``) or load them with
``nni_ext.pcdarts.load_genotype("this_file.py:NAME")``."""
from collections import namedtuple

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

PRIMITIVES = {primitives!r}

'''


def write_genotypes_py(path: str | os.PathLike, named: Mapping[str, Genotype]) -> Path:
    """Write genotypes as an importable Python file, one ``NAME = Genotype(...)`` line each (atomically).

    The file defines the ``Genotype`` namedtuple and ``PRIMITIVES`` at the top, so that it works as a drop-in
    DARTS ``genotypes.py`` (``from genotypes import l1_loss_2e01``) and can be read by :func:`load_genotype`.

    Raises:
        ValueError: if a name is not a Python identifier (or clashes with ``Genotype``/``PRIMITIVES``) or a
            genotype is invalid.
    """
    lines = [_PY_HEADER.format(primitives=list(PRIMITIVES))]
    for name, genotype in named.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) \
                or name in ("Genotype", "PRIMITIVES", "namedtuple"):
            raise ValueError(f"write_genotypes_py: name {name!r} is not usable as a Python variable; "
                             f"use letters, digits and '_' (e.g. genotype_name('l1', 0.2))")
        lines.append(f"{name} = {validate_genotype(genotype)!r}\n")
    return atomic_write_text(path, "".join(lines))

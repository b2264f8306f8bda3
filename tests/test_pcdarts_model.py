"""PC-DARTS search network, DARTS evaluation network and genotypes: shapes, partial channels, costs, parsing."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from nni_ext.cost import count_params
from nni_ext.pcdarts import (
    GENOTYPES,
    PRIMITIVES,
    EvalNetwork,
    Genotype,
    MixedOp,
    SearchNetwork,
    channel_shuffle,
    derive_genotype,
    drop_path,
    genotype_from_dict,
    genotype_name,
    genotype_to_dict,
    load_genotype,
    normalise_edges,
    parse_genotype,
    write_genotypes_py,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions run fastest on one thread, and the CI machine is shared (2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _record_input_channels(mixed: MixedOp) -> list[int]:
    seen: list[int] = []
    for op in mixed.ops:
        op.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[1]))
    return seen


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_mixed_op_keeps_shape_and_processes_c_over_k_channels(stride: int) -> None:
    torch.manual_seed(0)
    mixed = MixedOp(8, stride, partial_k=4)
    seen = _record_input_channels(mixed)
    weights = torch.softmax(torch.randn(len(PRIMITIVES)), dim=0)
    out = mixed(torch.randn(2, 8, 16, 16), weights)
    assert out.shape == (2, 8, 16 // stride, 16 // stride)
    assert seen == [2] * len(PRIMITIVES)  # every candidate op saw exactly C/K = 2 channels


def test_mixed_op_with_k1_sends_all_channels_and_rejects_indivisible_c() -> None:
    mixed = MixedOp(8, 2, partial_k=1)
    seen = _record_input_channels(mixed)
    out = mixed(torch.randn(2, 8, 16, 16), torch.full((len(PRIMITIVES),), 1 / len(PRIMITIVES)))
    assert out.shape == (2, 8, 8, 8)
    assert seen == [8] * len(PRIMITIVES)
    with pytest.raises(ValueError, match="C=10 is not divisible by partial_k=4"):
        MixedOp(10, 1, partial_k=4)


def test_partial_channels_bypass_unchanged_at_stride_1() -> None:
    # With only the `none` op weighted, the processed quarter is zero and the rest passes through, shuffled.
    mixed = MixedOp(8, 1, partial_k=4)
    x = torch.randn(1, 8, 4, 4)
    weights = torch.zeros(len(PRIMITIVES))
    weights[PRIMITIVES.index("none")] = 1.0
    out = mixed(x, weights)
    expected = channel_shuffle(torch.cat([torch.zeros_like(x[:, :2]), x[:, 2:]], dim=1), 4)
    assert torch.equal(out, expected)


def test_channel_shuffle_is_a_permutation() -> None:
    x = torch.arange(8.0).view(1, 8, 1, 1).expand(2, 8, 3, 3).contiguous()
    y = channel_shuffle(x, 4)
    order = y[0, :, 0, 0].tolist()
    assert order == [0, 2, 4, 6, 1, 3, 5, 7]
    assert sorted(order) == list(range(8))
    for c in range(8):
        assert torch.equal(y[:, c], x[:, int(order[c])])
    with pytest.raises(ValueError, match="not divisible by groups=3"):
        channel_shuffle(x, 3)


def test_edge_normalisation_sums_to_one_per_node() -> None:
    torch.manual_seed(1)
    betas = torch.randn(14) * 3
    normed = SearchNetwork(C=4, layers=3, partial_k=1).node_edge_normalisation(betas)
    assert normed.shape == (14,)
    start = 0
    for node in range(4):
        chunk = normed[start:start + node + 2]
        assert torch.isclose(chunk.sum(), torch.tensor(1.0))
        assert torch.allclose(chunk, torch.softmax(betas[start:start + node + 2], dim=0))
        start += node + 2
    assert torch.allclose(normalise_edges(betas, 4), normed)
    with pytest.raises(ValueError, match=r"expected \(14,\)"):
        normalise_edges(torch.zeros(10), 4)


def _cell_weights() -> np.ndarray:
    """Hand-made (14, 8) weights; `none` dominates several edges but must never be chosen."""
    idx = {name: i for i, name in enumerate(PRIMITIVES)}
    w = np.full((14, 8), 0.01)
    # node 0: edges 0, 1 (both kept); edge 1 has `none` largest, sep_conv_5x5 second.
    w[0, idx["sep_conv_3x3"]] = 0.5
    w[1, idx["none"]] = 0.9
    w[1, idx["sep_conv_5x5"]] = 0.3
    # node 1: edges 2, 3, 4 (inputs 0, 1, 2); edge 3 has only `none` strong -> dropped.
    w[2, idx["dil_conv_3x3"]] = 0.4
    w[3, idx["none"]] = 0.99
    w[4, idx["max_pool_3x3"]] = 0.2
    # node 2: edges 5..8 (inputs 0..3); keep inputs 3 and 1, strongest first.
    w[6, idx["skip_connect"]] = 0.3
    w[8, idx["avg_pool_3x3"]] = 0.6
    w[5, idx["none"]] = 0.95
    # node 3: edges 9..13 (inputs 0..4); keep inputs 4 and 2.
    w[13, idx["dil_conv_5x5"]] = 0.7
    w[11, idx["sep_conv_3x3"]] = 0.25
    w[9, idx["none"]] = 0.8
    return w


def test_derive_genotype_picks_top2_edges_and_never_none() -> None:
    w = _cell_weights()
    genotype = derive_genotype(w, torch.tensor(w), steps=4, multiplier=4)
    expected = [("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("dil_conv_3x3", 0), ("max_pool_3x3", 2),
                ("avg_pool_3x3", 3), ("skip_connect", 1), ("dil_conv_5x5", 4), ("sep_conv_3x3", 2)]
    assert genotype.normal == expected
    assert genotype.reduce == expected
    assert genotype.normal_concat == [2, 3, 4, 5]
    assert all(op != "none" for op, _ in genotype.normal)
    with pytest.raises(ValueError, match=r"weights_normal has shape \(14, 7\)"):
        derive_genotype(w[:, :7], w)


def test_search_network_forward_backward_and_genotype() -> None:
    torch.manual_seed(0)
    net = SearchNetwork(C=8, layers=5)
    assert [i for i, cell in enumerate(net.cells) if cell.reduction] == [1, 3]
    assert net.alphas_normal.shape == (14, 8) and net.betas_reduce.shape == (14,)
    arch = {id(p) for p in net.arch_parameters()}
    weights = net.weight_parameters()
    assert len(arch) == 4 and not arch & {id(p) for p in weights}
    assert len(weights) + 4 == len(list(net.parameters()))

    logits = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2])).backward()
    for p in net.arch_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert net.stem[0].weight.grad is not None

    normal, reduce = net.edge_weights()
    assert normal.shape == reduce.shape == (14, 8)
    assert torch.isclose(normal[:2].sum(), torch.tensor(1.0))  # node 0: betas and alphas both normalised
    genotype = net.genotype()
    assert len(genotype.normal) == len(genotype.reduce) == 8
    assert genotype == derive_genotype(normal.detach(), reduce.detach())
    EvalNetwork(genotype, C=8, layers=5)  # a derived genotype builds an evaluation network


def test_expected_cost_is_differentiable_and_tracks_op_choice() -> None:
    torch.manual_seed(0)
    net = SearchNetwork(C=8, layers=5)
    cost = net.expected_cost("params")
    cost.backward()
    assert net.alphas_normal.grad is not None and net.alphas_normal.grad.abs().sum() > 0
    assert net.betas_reduce.grad is not None and net.betas_reduce.grad.abs().sum() > 0
    flops_before = net.expected_cost("flops").item()
    assert flops_before > 0
    sep5 = PRIMITIVES.index("sep_conv_5x5")
    # Parameters of one partial-width (2-channel) sep_conv_5x5 at stride 1: 2 x (depthwise 2*25 + pointwise 2*2).
    params, flops = net.cost_tables()
    assert params.shape == flops.shape == (5, 14, 8)
    assert params[0, 0, sep5].item() == 2 * (2 * 25 + 2 * 2)
    assert params[0, 0, PRIMITIVES.index("max_pool_3x3")].item() == 0
    assert params[:, :, PRIMITIVES.index("none")].sum().item() == 0
    # MACs of that op on the 32x32 input of cell 0 (no forward yet: 32x32): per separable conv 32*32*(2*25 + 2*2).
    assert flops[0, 0, sep5].item() == 2 * 32 * 32 * (2 * 25 + 2 * 2)
    # Cell 1 is a reduction cell: edge 0 (from a cell input) has stride 2, so its second conv runs at 16x16.
    assert flops[1, 0, sep5].item() == 16 * 16 * (4 * 25 + 4 * 4) * 2
    with torch.no_grad():
        net.alphas_normal[:, sep5] += 5.0
        net.alphas_reduce[:, sep5] += 5.0
    assert net.expected_cost("params").item() > cost.item() * 2
    assert net.expected_cost("flops").item() > flops_before
    # Raw units: with all weight on sep_conv_5x5 everywhere, the expected cost is the sum of those ops' costs.
    with torch.no_grad():
        for p in (net.alphas_normal, net.alphas_reduce):
            p.fill_(-1e4)
            p[:, sep5] = 0.0
    # (each op of a cell has the same parameter count on all 14 edges; each of the 4 nodes has beta summing to 1)
    assert net.expected_cost("params").item() == pytest.approx(params[..., sep5].sum().item() * 4 / 14, rel=1e-5)
    # FLOPs follow the resolution of the images the network is run on.
    with torch.no_grad():
        net(torch.randn(1, 3, 16, 16))
    assert net.cost_tables()[1][0, 0, sep5].item() == 2 * 16 * 16 * (2 * 25 + 2 * 2)
    assert SearchNetwork(C=8, layers=5, input_size=8).cost_tables()[1][0, 0, sep5].item() == 2 * 8 * 8 * 54
    with pytest.raises(ValueError, match="kind='latency'"):
        net.expected_cost("latency")


def _params_without_aux(model: EvalNetwork) -> int:
    return count_params(model) - count_params(model.auxiliary_head)


@pytest.mark.parametrize("name,exact,millions", [("DARTS_V2", 3_349_342, 3.3), ("PC_DARTS_cifar", 3_634_678, 3.6)])
def test_eval_network_has_published_parameter_count(name: str, exact: int, millions: float) -> None:
    model = EvalNetwork(GENOTYPES[name], C=36, num_classes=10, layers=20, auxiliary=True)
    assert _params_without_aux(model) == model.num_params() == exact
    assert round(exact / 1e6, 1) == millions
    assert model.num_params(include_auxiliary=True) == count_params(model) > exact


def test_eval_network_forward_train_and_eval() -> None:
    torch.manual_seed(0)
    model = EvalNetwork("PC_DARTS_cifar", C=8, layers=5, auxiliary=True, drop_path_prob=0.2)
    x = torch.randn(2, 3, 32, 32)
    model.train()
    logits, aux = model(x)
    assert logits.shape == (2, 10) and aux is not None and aux.shape == (2, 10)
    (logits.sum() + aux.sum()).backward()
    model.drop_path_prob = 0.0
    model.eval()
    with torch.no_grad():
        logits, aux = model(x)
    assert logits.shape == (2, 10) and aux is None
    # The auxiliary head copes with other input sizes (maps of 4x4 and 16x16 instead of 8x8).
    model.train()
    for size in (16, 64):
        logits, aux = model(torch.randn(2, 3, size, size))
        assert logits.shape == aux.shape == (2, 10)
    no_aux = EvalNetwork("DARTS_V2", C=8, layers=5, auxiliary=False, num_classes=3)
    assert no_aux(x)[1] is None and no_aux(x)[0].shape == (2, 3)


def test_drop_path_drops_whole_samples_and_rescales() -> None:
    torch.manual_seed(0)
    x = torch.ones(64, 3, 2, 2)
    y = drop_path(x, 0.5)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert ((per_sample == 0).all(1) | (per_sample == 2).all(1)).all()
    assert torch.equal(drop_path(x, 0.0), x)
    with pytest.raises(ValueError, match="drop_prob"):
        drop_path(x, 1.0)


def test_published_genotypes_are_exact() -> None:
    pc = GENOTYPES["PC_DARTS_cifar"]
    assert pc.normal[:2] == [("sep_conv_3x3", 1), ("skip_connect", 0)]
    assert pc.reduce[-1] == ("sep_conv_3x3", 2)
    assert GENOTYPES["DARTS_V2"].normal[-1] == ("dil_conv_3x3", 2)
    assert GENOTYPES["DARTS_V1"].reduce[-1] == ("avg_pool_3x3", 0)
    assert GENOTYPES["PC_DARTS_image"].normal[-1] == ("dil_conv_5x5", 4)


def test_parse_genotype_round_trip_and_safety() -> None:
    original = GENOTYPES["PC_DARTS_cifar"]
    assert parse_genotype(repr(original)) == original
    # The published text uses range(2, 6); it parses to the same genotype.
    text = repr(original).replace("[2, 3, 4, 5]", "range(2, 6)")
    assert "range(2, 6)" in text and parse_genotype(text) == original
    with pytest.raises(ValueError, match="unknown operation 'sep_conv_9x9'"):
        parse_genotype(repr(original).replace("'sep_conv_5x5'", "'sep_conv_9x9'", 1))
    with pytest.raises(ValueError, match="not a literal"):
        parse_genotype("Genotype(normal=__import__('os').getcwd(), normal_concat=[2], reduce=[], reduce_concat=[2])")
    bad_input = original._replace(normal=[("sep_conv_3x3", 2)] + original.normal[1:])
    with pytest.raises(ValueError, match="input 2 is invalid"):
        parse_genotype(repr(bad_input))


def test_dict_round_trip_is_json_able() -> None:
    for genotype in GENOTYPES.values():
        data = json.loads(json.dumps(genotype_to_dict(genotype)))
        assert data["normal"][0] == list(genotype.normal[0])
        assert genotype_from_dict(data) == genotype
    with pytest.raises(ValueError, match="missing key"):
        genotype_from_dict({"normal": []})


def test_load_genotype_from_names_and_files(tmp_path) -> None:
    assert load_genotype("DARTS_V2") == GENOTYPES["DARTS_V2"]
    with pytest.raises(ValueError, match="unknown genotype 'DARTS_V9'.*DARTS_V2.*PC_DARTS_cifar"):
        load_genotype("DARTS_V9")

    single = tmp_path / "one.json"
    single.write_text(json.dumps(genotype_to_dict(GENOTYPES["DARTS_V1"])))
    assert load_genotype(single) == GENOTYPES["DARTS_V1"]
    many = tmp_path / "many.json"
    many.write_text(json.dumps({k: genotype_to_dict(GENOTYPES[k]) for k in ("DARTS_V1", "PC_DARTS_image")}))
    assert load_genotype(f"{many}:PC_DARTS_image") == GENOTYPES["PC_DARTS_image"]
    with pytest.raises(ValueError, match="choose one with .*DARTS_V1, PC_DARTS_image"):
        load_genotype(str(many))
    with pytest.raises(ValueError, match="no genotype 'nope'"):
        load_genotype(f"{many}:nope")
    with pytest.raises(ValueError, match="not found"):
        load_genotype(tmp_path / "missing.json")

    name = genotype_name("l1", 0.2)
    py = write_genotypes_py(tmp_path / "genotypes.py", {name: GENOTYPES["PC_DARTS_cifar"],
                                                       "other": GENOTYPES["DARTS_V2"]})
    assert load_genotype(f"{py}:{name}") == GENOTYPES["PC_DARTS_cifar"]
    assert load_genotype(f"{py}:other") == GENOTYPES["DARTS_V2"]
    spec = importlib.util.spec_from_file_location("written_genotypes", py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the written file is importable and its values match
    assert tuple(getattr(module, name)) == tuple(GENOTYPES["PC_DARTS_cifar"])
    assert module.Genotype._fields == Genotype._fields
    with pytest.raises(ValueError, match="not usable as a Python variable"):
        write_genotypes_py(tmp_path / "bad.py", {"1x": GENOTYPES["DARTS_V2"]})

    # A DARTS-style file with range(...) and an alias is read without executing it.
    darts_py = tmp_path / "darts_genotypes.py"
    darts_py.write_text("import os\nos.remove('never')\n"
                        f"PCDARTS = {repr(GENOTYPES['PC_DARTS_cifar']).replace('[2, 3, 4, 5]', 'range(2, 6)')}\n"
                        "ALIAS = PCDARTS\n")
    assert load_genotype(f"{darts_py}:ALIAS") == GENOTYPES["PC_DARTS_cifar"]


@pytest.mark.parametrize("objective,nu,name", [("l1", 0.2, "l1_loss_2e01"), ("l2", 3e-6, "l2_loss_3e06"),
                                               ("l1", 0, "l1_loss_0"), ("l1", 1e-3, "l1_loss_1e03"),
                                               ("l2", 2.5e-4, "l2_loss_25e04")])
def test_genotype_name(objective: str, nu: float, name: str) -> None:
    assert genotype_name(objective, nu) == name
    assert name.isidentifier()


def test_genotype_name_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="nu=-0.1"):
        genotype_name("l1", -0.1)
    with pytest.raises(ValueError, match="objective="):
        genotype_name("l1 loss", 0.1)

"""ONNX import/export, VNNLIB read/write and VNN-COMP instances (lpbench.interop)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from lpbench.activations import parse_activation  # noqa: E402
from lpbench.errors import LpbenchError, ModelError  # noqa: E402
from lpbench.interop.benchmark import write_instances_csv, write_robustness_instances  # noqa: E402
from lpbench.interop.encode import clipped_ball, encode  # noqa: E402
from lpbench.interop.onnx_export import OrtModel, export_onnx  # noqa: E402
from lpbench.interop.onnx_import import from_onnx, load_onnx  # noqa: E402
from lpbench.interop.vnncomp import (Loaded, load_model_file, parse_result_text, result_text,  # noqa: E402
                                     run_instances, solve)
from lpbench.interop.vnnlib import (Property, VnnlibError, parse_vnnlib, read_vnnlib,  # noqa: E402
                                    robustness_property, vnnlib_text, write_vnnlib)
from lpbench.methods import verify  # noqa: E402
from lpbench.network import Act, Dense, Flatten, Network  # noqa: E402
from lpbench.problem import Perturbation, Status  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RNG = np.random.default_rng(0)


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def _model(nodes, inits, in_shape, out_shape):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _agree(model, imported, n=8):
    """The imported network (float64) against onnxruntime (float32) on random inputs."""
    net = imported.network
    x = RNG.random((n, *net.input_shape)).astype(np.float32)
    ours, ort = net.logits64(x), OrtModel(model)(x)
    scale = max(1.0, np.abs(ort).max())
    np.testing.assert_allclose(ours, ort, rtol=1e-5, atol=1e-5 * scale)
    return ours


# -- ONNX --------------------------------------------------------------------------------------
def test_zoo_models_round_trip_through_onnx(shared_mirror, tmp_path):
    from lpbench.zoo import list_models, load_model
    for info in list_models():
        net = load_model(info.name)
        path = tmp_path / f"{info.name}.onnx"
        export_onnx(net, path)
        back = load_onnx(path).network
        assert back.input_shape == net.input_shape and len(back.layers) == len(net.layers)
        for a, b in zip(net.layers, back.layers):
            assert type(a) is type(b)
            if hasattr(a, "weight"):  # the very same float32 numbers
                assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        x = RNG.random((3, *net.input_shape)).astype(np.float32)
        assert np.array_equal(net.logits64(x), back.logits64(x)), info.name
        f32 = net.forward(torch.as_tensor(x)).numpy()
        ort = OrtModel(path)(x)
        np.testing.assert_allclose(ort, f32, rtol=1e-4, atol=1e-5 * np.abs(f32).max(), err_msg=info.name)


def test_normalisation_matmul_add_and_gemm_folded(tmp_path):
    """(x - mean) / std, Flatten, MatMul + Add, Relu, Gemm(transB=0, alpha, beta), Mul after:
    folded into two dense layers that match onnxruntime; symbolic batch dimension."""
    w1, b1, w2, b2 = RNG.normal(size=(12, 6)), RNG.normal(size=6), RNG.normal(size=(6, 3)), RNG.normal(size=3)
    mean, std = RNG.random((1, 3, 2, 2)), 0.5 + RNG.random((1, 3, 1, 1))
    nodes = [helper.make_node("Sub", ["x", "mean"], ["a"], "norm_sub"),
             helper.make_node("Div", ["a", "std"], ["b"], "norm_div"),
             helper.make_node("Flatten", ["b"], ["c"], "flat"),
             helper.make_node("MatMul", ["c", "w1"], ["d"], "mm"),
             helper.make_node("Add", ["d", "b1"], ["e"], "bias"),
             helper.make_node("Relu", ["e"], ["f"], "relu"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["g"], "gemm", alpha=0.5, beta=2.0),
             helper.make_node("Mul", ["g", "three"], ["y"], "scale")]
    inits = [_init("mean", mean), _init("std", std), _init("w1", w1), _init("b1", b1), _init("w2", w2),
             _init("b2", b2), _init("three", [3.0])]
    model = _model(nodes, inits, ["N", 3, 2, 2], ["N", 3])
    imp = from_onnx(model)
    net = imp.network
    assert [type(l) for l in net.layers] == [Flatten, Dense, Act, Dense]
    assert net.input_shape == (3, 2, 2) and imp.onnx_input_shape == (1, 3, 2, 2)
    _agree(model, imp)


def test_conv_batchnorm_reshape_and_shape_arithmetic():
    """[1, 16] input reshaped to [1, 1, 4, 4], per-channel scale, Conv (padded), BatchNorm,
    Relu, the torch export idiom Shape -> Gather -> Unsqueeze -> Concat -> Reshape, Gemm."""
    wc, bc = RNG.normal(size=(2, 1, 3, 3)), RNG.normal(size=2)
    nodes = [helper.make_node("Reshape", ["x", "shape4"], ["r"], "unflatten"),
             helper.make_node("Mul", ["r", "s"], ["m"], "scale"),
             helper.make_node("Conv", ["m", "wc", "bc"], ["c"], "conv", pads=[1, 1, 1, 1], strides=[1, 1],
                              kernel_shape=[3, 3]),
             helper.make_node("BatchNormalization", ["c", "g", "beta", "mu", "var"], ["bn"], "bn"),
             helper.make_node("Relu", ["bn"], ["h"], "relu"),
             helper.make_node("Shape", ["h"], ["sh"], "shape"),
             helper.make_node("Constant", [], ["zero"], "zero", value=numpy_helper.from_array(np.array(0, np.int64))),
             helper.make_node("Gather", ["sh", "zero"], ["n"], "gather", axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], "unsq"),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], "concat", axis=0),
             helper.make_node("Reshape", ["h", "target"], ["flat"], "flatten"),
             helper.make_node("Gemm", ["flat", "w", "b"], ["y"], "fc", transB=1)]
    inits = [numpy_helper.from_array(np.array([1, 1, 4, 4], np.int64), "shape4"), _init("s", [2.5]),
             _init("wc", wc), _init("bc", bc), _init("g", [1.5, 0.5]), _init("beta", [0.1, -0.2]),
             _init("mu", [0.3, -0.1]), _init("var", [2.0, 0.5]),
             numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             _init("w", RNG.normal(size=(5, 32))), _init("b", RNG.normal(size=5))]
    model = _model(nodes, inits, [1, 16], [1, 5])
    imp = from_onnx(model)
    assert imp.network.input_shape == (1, 4, 4) and imp.onnx_input_shape == (1, 16)
    _agree(model, imp)


@pytest.mark.parametrize("op,attrs,spec", [("LeakyRelu", {"alpha": 0.1}, "leaky_relu(0.1)"),
                                           ("Sigmoid", {}, "sigmoid"), ("Tanh", {}, "tanh")])
def test_other_activations_match_or_are_refused_by_name(op, attrs, spec):
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], "fc1", transB=1),
             helper.make_node(op, ["h"], ["a"], "act_node", **attrs),
             helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], "fc2", transB=1)]
    inits = [_init("w", RNG.normal(size=(4, 3))), _init("b", RNG.normal(size=4)),
             _init("w2", RNG.normal(size=(2, 4))), _init("b2", RNG.normal(size=2))]
    model = _model(nodes, inits, [1, 3], [1, 2])
    try:
        parse_activation(spec)
    except LpbenchError:  # lpbench does not know this activation (yet): a clear refusal
        with pytest.raises(ModelError, match=f"{op}.*act_node"):
            from_onnx(model)
        return
    imp = from_onnx(model)
    _agree(model, imp)
    assert export_onnx(imp.network) is not None


def test_onnx_bad_input(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelError, match="garbage.onnx"):
        load_onnx(garbage)
    with pytest.raises(ModelError, match="not found"):
        load_onnx(tmp_path / "missing.onnx")
    pool = _model([helper.make_node("MaxPool", ["x"], ["y"], "pool7", kernel_shape=[2, 2])], [],
                  [1, 1, 4, 4], [1, 1, 2, 2])
    with pytest.raises(ModelError, match=r"unsupported ONNX operator MaxPool \(node 'pool7'\)"):
        from_onnx(pool)
    residual = _model([helper.make_node("Relu", ["x"], ["h"], "r"), helper.make_node("Add", ["h", "x"], ["y"], "res")],
                      [], [1, 3], [1, 3])
    with pytest.raises(ModelError, match="chain"):
        from_onnx(residual)
    softmax_net = Network((Dense(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)),
                           Act(parse_activation("relu"))), (2,))
    assert len(from_onnx(export_onnx(softmax_net)).network.layers) == 2


# -- VNNLIB ------------------------------------------------------------------------------------
GENERAL = """; a comment
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (and (>= X_0 -1) (<= X_0 1.5)))
(assert (<= 0.25 X_1))  ; bound written the other way round
(assert (= (* 2 X_1) 1.0))
(assert (or (and (>= Y_0 Y_1) (<= (+ Y_2 (* -0.5 Y_0)) 3))
            (and (>= (- Y_1 (* 2 Y_2)) -1))))
(assert (<= Y_0 (/ 4 2)))
"""


def test_vnnlib_general_form_parsed_and_rewritten():
    p = parse_vnnlib(GENERAL)
    assert p.lower.tolist() == [-1.0, 0.5] and p.upper.tolist() == [1.5, 0.5]
    assert len(p.rows) == 2  # (A or B) and C  ->  (A and C) or (B and C)
    np.testing.assert_array_equal(p.rows[0], [[1, -1, 0], [0.5, 0, -1], [-1, 0, 0]])
    np.testing.assert_array_equal(p.rhs[0], [0, -3, -2])
    np.testing.assert_array_equal(p.rows[1], [[0, 1, -2], [-1, 0, 0]])
    np.testing.assert_array_equal(p.rhs[1], [-1, -2])
    assert p.reached([2, 1, 0]) and not p.reached([3, 1, 0]) and not p.reached([1, 2, 3])
    assert parse_vnnlib(vnnlib_text(p)).same_as(p)


def test_robustness_vnnlib_round_trip_gives_the_same_problem(tmp_path):
    x = RNG.random((1, 28, 28)).astype(np.float32)
    x[0, :3] = 0.0
    x[0, 3:5] = 1.0
    for eps in (0.0, 0.02, 0.1, 1 / 3):
        p = robustness_property(x, 3, eps, 10)
        write_vnnlib(tmp_path / "p.vnnlib", p, comment="test\nproperty")
        q = read_vnnlib(tmp_path / "p.vnnlib")
        assert q.same_as(p)
        centre, e, a, b = clipped_ball(q.lower, q.upper)
        assert np.array_equal(centre, x.ravel()) and (a, b) == (0.0, 1.0)
        assert eps <= e <= eps + 1e-15  # the ball holds the box exactly; one rounding larger at most
        net = Network((Flatten(), Dense(RNG.normal(size=(10, 784)).astype(np.float32), np.zeros(10, np.float32))),
                      (1, 28, 28))
        enc = encode(net, q)
        assert enc.label == 3 and enc.net is net and not enc.reparam
        assert enc.groups == tuple((j,) for j in range(10) if j != 3)


@pytest.mark.parametrize("text,line,msg", [
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))\n(assert (>= Y_0 0))", 1, "unbounded"),
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))\n(assert (>= X_0 0))\n"
     "(assert (>= (* Y_0 Y_0) 1))", 5, "non-linear"),
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))\n(assert (>= X_0 0))\n"
     "(assert (>= (exp Y_0) 1))", 5, "unsupported term"),
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 Y_0))", 3, "mixed"),
    ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(assert (<= X_0 X_1))", 3, "one variable"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1)", 2, "never closed"),
    ("(declare-const X_0 Real)\n(assert (<= X_3 1))", 2, "never declared"),
    ("(declare-const X_0 Real)\n(check-sat)", 2, "unsupported command"),
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 0))\n(assert (>= X_0 1))\n"
     "(assert (>= Y_0 0))", 4, "empty range"),
])
def test_vnnlib_errors_name_the_line(text, line, msg):
    with pytest.raises(VnnlibError, match=rf"f\.vnnlib:{line}: .*{msg}"):
        parse_vnnlib(text, "f.vnnlib")


# -- properties on networks ----------------------------------------------------------------------
def _tiny_relu_net(seed, n_in=3, hidden=6, n_out=3) -> Network:
    r = np.random.default_rng(seed)
    return Network((Dense(r.normal(size=(hidden, n_in)).astype(np.float32), r.normal(size=hidden).astype(np.float32)),
                    Act(parse_activation("relu")),
                    Dense(r.normal(size=(n_out, hidden)).astype(np.float32), r.normal(size=n_out).astype(np.float32))),
                   (n_in,), f"tiny{seed}")


def _check_answer(loaded: Loaded, prop: Property, ans, samples: int = 4000):
    """An unsat answer: no sampled input of the box reaches the region; sat: the point does."""
    net = loaded.imported.network
    if ans.result == "unsat":
        pts = prop.lower + (prop.upper - prop.lower) * RNG.random((samples, prop.lower.size))
        ys = net.logits64(pts)
        assert not any(prop.reached(y) for y in ys)
    elif ans.result == "sat":
        assert prop.in_box(ans.x) and prop.reached(ans.y) and prop.reached(net.logits64(ans.x[None])[0])


def test_general_regions_and_boxes_are_sound(tmp_path):
    """Non-margin regions (rows with offsets, one per disjunct) on general (non-ball) boxes:
    milp decides each, crown's answers agree with sampling; with a conjunction, a row that can
    never hold rules its disjunct out (one run per row)."""
    decided, paths = {"sat": 0, "unsat": 0}, set()
    for seed in range(6):
        net = _tiny_relu_net(seed)
        export_onnx(net, tmp_path / "n.onnx")
        loaded = load_model_file(tmp_path / "n.onnx")
        r = np.random.default_rng(100 + seed)
        lo = r.uniform(-1, 0, 3)
        hi = lo + r.uniform(0.1, 1.0, 3)  # widths differ: not a ball
        ys = net.logits64(lo + (hi - lo) * r.random((500, 3)))
        for d in (np.quantile(ys[:, 0] - ys[:, 1], 0.9), ys.max() + 1.0):  # reachable / not
            prop = Property(lo, hi, 3, (np.array([[1.0, -1.0, 0.0]]), np.array([[0.0, 0.0, 2.0]])),
                            (np.array([d]), np.array([2 * ys[:, 2].max() + 0.1])))
            paths.add(encode(net, prop).reparam)  # mostly not a ball: u in [0, 1]^3, diagonal layer
            for method in ("crown", "milp"):
                ans = solve(loaded, prop, method, 30.0)
                _check_answer(loaded, prop, ans)
                if method == "milp":
                    assert ans.result in ("sat", "unsat")
                    decided[ans.result] += 1
        far = np.abs(ys).max() + 100.0  # Y_2 >= far never holds, Y_1 >= -far always does
        conj = Property(lo, hi, 3, (np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),), (np.array([far, -far]),))
        for method in ("crown", "milp"):
            assert solve(loaded, conj, method, 30.0).result == "unsat"
    assert decided["sat"] and decided["unsat"] and True in paths


def test_a_general_box_on_a_conv_network_is_refused():
    from lpbench.network import Conv2d
    net = Network((Conv2d(np.ones((1, 1, 2, 2), np.float32), np.zeros(1, np.float32)), Act(parse_activation("relu")),
                   Flatten(), Dense(np.ones((2, 1), np.float32), np.zeros(2, np.float32))), (1, 2, 2))
    prop = Property(np.zeros(4), np.array([1.0, 0.5, 0.25, 1.0]), 2, (np.array([[1.0, -1.0]]),), (np.zeros(1),))
    with pytest.raises(LpbenchError, match="first layer is dense"):
        encode(net, prop)
    ball = Property(np.zeros(4), np.full(4, 0.5), 2, (np.array([[1.0, -1.0]]),), (np.zeros(1),))
    enc = encode(net, ball)
    assert not enc.reparam and enc.pset.eps == 0.25 and np.all(enc.x == 0.25)


def test_hand_computable_property(tmp_path):
    """y = relu(x0) - relu(x1) on [0, 1]^2: y >= 0.5 is reachable, y >= 1.5 is not; y >= 1
    holds only at the corner (1, 0): lpbench's counterexamples are strict (margin < 0), so the
    tie may stay unknown, but it must never be called unsat."""
    net = Network((Dense(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)), Act(parse_activation("relu")),
                   Dense(np.array([[1.0, -1.0]], np.float32), np.zeros(1, np.float32))), (2,))
    export_onnx(net, tmp_path / "h.onnx")
    loaded = load_model_file(tmp_path / "h.onnx")
    text = "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)\n" \
           "(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= X_1 1))(assert (>= X_1 0))\n"
    for bound, want in ((0.5, "sat"), (1.5, "unsat"), (1.0, "sat")):
        prop = parse_vnnlib(text + f"(assert (>= Y_0 {bound}))")
        for method in ("milp", "lp-all", "crown", "ibp"):
            ans = solve(loaded, prop, method, 10.0)
            if bound == 1.0:
                assert ans.result in ("sat", "unknown"), (method, ans)
            elif method == "milp" or want == "unsat":
                assert ans.result == want, (bound, method, ans)
            if ans.result == "sat":
                assert ans.y[0] >= bound and prop.in_box(ans.x)


# -- VNN-COMP instances ----------------------------------------------------------------------------
def _train_mlp(images, labels, hidden, seed) -> Network:
    torch.manual_seed(seed)
    layers, width = [torch.nn.Flatten()], 784
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.as_tensor(images), torch.as_tensor(labels)
    for _ in range(3):
        for s in range(0, len(y), 200):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[s:s + 200]), y[s:s + 200]).backward()
            opt.step()
    return Network.from_torch(model, (1, 28, 28), f"mlp{seed}")


def test_generated_benchmark_milp_consistent_with_pgd_and_lp_all(tmp_path, shared_mirror):
    from lpbench.data import load_dataset
    data = load_dataset("mnist", "test")
    train = slice(1000, 3000)
    rows = []
    for k, hidden in enumerate(((16,), (10, 10), (20,))):
        net = _train_mlp(data.images[train], data.labels[train], hidden, k)
        ids = np.arange(10)
        rows += write_robustness_instances(tmp_path, net, f"mlp{k}", data.images[ids], data.labels[ids], ids,
                                           (0.01, 0.04), 30.0, "mnist")
    csv_path = write_instances_csv(tmp_path, rows)
    fast_pgd = {"pgd": {"steps": 20, "restarts": 2}}  # also the MILP's first step
    res = {m: run_instances(csv_path, m, tmp_path / m, fast_pgd) for m in ("milp", "pgd", "lp-all")}
    assert all(len(r) == 60 for r in res.values())
    milp = [r["result"] for r in res["milp"]]
    assert set(milp) <= {"sat", "unsat"} and milp.count("sat") >= 3 and milp.count("unsat") >= 3
    for m, p, lp in zip(res["milp"], res["pgd"], res["lp-all"]):
        assert p["result"] in ("sat", "unknown") and lp["result"] in ("sat", "unsat", "unknown")
        if p["result"] == "sat" or lp["result"] == "sat":
            assert m["result"] == "sat"
        if lp["result"] == "unsat":
            assert m["result"] == "unsat"
    loaded = load_model_file(tmp_path / "onnx" / "mlp0.onnx")
    for r in res["milp"]:
        result, assignment = parse_result_text((tmp_path / "milp" / r["result_file"]).read_text())
        assert result == r["result"]
        if result == "sat":
            prop = read_vnnlib(tmp_path / r["vnnlib"])
            x = np.array([assignment[f"X_{i}"] for i in range(784)])
            y = np.array([assignment[f"Y_{j}"] for j in range(10)])
            assert prop.in_box(x) and prop.reached(y)
            if r["onnx"] == "onnx/mlp0.onnx":
                assert prop.reached(loaded.ort(x[None])[0])
    # the same problems through lpbench directly: identical MILP verdicts
    net = load_onnx(tmp_path / "onnx" / "mlp0.onnx").network
    direct = verify(net, data.images[:10], data.labels[:10], Perturbation(0.01), ["milp"],
                    options={"milp": {"time_limit": 30.0}, **fast_pgd})
    want = ["sat" if o.status is Status.FALSIFIED else "unsat" for o in direct]
    assert want == milp[:10]


@pytest.mark.parametrize("model,eps", [("ADV-MLP-A-0.1", 0.02), ("LPD-MLP-B-0.4", 0.05)])
def test_zoo_verdicts_identical_through_onnx_and_vnnlib(tmp_path, shared_mirror, model, eps):
    """LP-ALL and MILP on a zoo model directly, and on its ONNX export with the VNNLIB file of
    the same problem: the same verdicts (and LP-ALL margins)."""
    from lpbench.data import load_dataset
    from lpbench.zoo import load_model
    net = load_model(model)
    data = load_dataset("mnist", "test")
    ids = np.arange(2)
    rows = write_robustness_instances(tmp_path, net, model, data.images[ids], data.labels[ids], ids, (eps,), 60.0)
    loaded = load_model_file(tmp_path / rows[0][0])
    opts = {"pgd": {"steps": 20, "restarts": 2}, "milp": {"time_limit": 60.0}}
    direct = verify(net, data.images[ids], data.labels[ids], Perturbation(eps), ["lp-all", "milp"], options=opts)
    word = {Status.VERIFIED: "unsat", Status.FALSIFIED: "sat"}
    for k, (_, vnn, _) in enumerate(rows):
        prop = read_vnnlib(tmp_path / vnn)
        enc = encode(loaded.imported.network, prop)
        assert np.array_equal(enc.x, data.images[k]) and enc.label == data.labels[k]
        for o in (direct[k], direct[len(ids) + k]):
            ans = solve(loaded, prop, o.method, 60.0, opts)
            assert ans.result == word.get(o.status, "unknown"), (o.method, k, ans)
        again = verify(enc.net, enc.x[None], [enc.label], enc.pset, ["lp-all"], options=opts)[0]
        np.testing.assert_allclose(again.margin_lower, direct[k].margin_lower, rtol=1e-9, atol=1e-9)


def test_bad_instances_are_error_rows_and_the_rest_goes_on(tmp_path):
    net = _tiny_relu_net(1, n_in=4, n_out=3)
    export_onnx(net, tmp_path / "good.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x01\x12garbage" * 50)
    pool = _model([helper.make_node("MaxPool", ["x"], ["y"], "pool", kernel_shape=[2, 2])], [], [1, 1, 4, 4],
                  [1, 1, 2, 2])
    onnx.save(pool, tmp_path / "pool.onnx")
    good = robustness_property(np.full(4, 0.5, np.float32), 0, 0.05, 3)
    write_vnnlib(tmp_path / "good.vnnlib", good)
    (tmp_path / "unbounded.vnnlib").write_text(vnnlib_text(good).replace("(assert (<= X_2 0.55))", ""))
    (tmp_path / "nonlinear.vnnlib").write_text(vnnlib_text(good) + "(assert (>= (* Y_0 Y_1) 0))\n")
    rows = ["good.onnx,good.vnnlib,10", "missing.onnx,good.vnnlib,10", "good.onnx,missing.vnnlib,10",
            "garbage.onnx,good.vnnlib,10", "pool.onnx,good.vnnlib,10", "good.onnx,unbounded.vnnlib,10",
            "good.onnx,nonlinear.vnnlib,10", "good.onnx,good.vnnlib,never", "good.onnx,good.vnnlib",
            "good.onnx,good.vnnlib,10"]
    (tmp_path / "instances.csv").write_text("\n".join(rows) + "\n")
    recs = run_instances(tmp_path / "instances.csv", "milp", tmp_path / "out")
    results = [r["result"] for r in recs]
    assert results[0] in ("sat", "unsat") and results[-1] == results[0]
    assert results[1:-1] == ["error"] * 8
    msgs = [r["message"] for r in recs[1:-1]]
    for m, want in zip(msgs, ["missing.onnx", "missing.vnnlib", "garbage.onnx", "MaxPool", "unbounded",
                              "non-linear", "bad timeout", "expected onnx,vnnlib,timeout"]):
        assert want in m, (want, m)
    for r in recs:
        assert parse_result_text((tmp_path / "out" / r["result_file"]).read_text())[0] == r["result"]


def test_result_text_round_trip():
    from lpbench.interop.vnncomp import Answer
    ans = Answer("sat", 0.1, x=np.array([0.25, 1e-7]), y=np.array([-3.5, 2.0]))
    result, assignment = parse_result_text(result_text(ans))
    assert result == "sat" and assignment == {"X_0": 0.25, "X_1": 1e-7, "Y_0": -3.5, "Y_1": 2.0}
    assert parse_result_text("unsat\n") == ("unsat", {})
    with pytest.raises(LpbenchError):
        parse_result_text("maybe\n")
    with pytest.raises(LpbenchError):
        parse_result_text("sat\n")


def test_cli_export_and_run(tmp_path, shared_mirror, monkeypatch, capsys):
    import sys

    from lpbench.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["lpbench", *args])
        try:
            main()
        except SystemExit as e:
            return e.code or 0
        return 0

    out = tmp_path / "bench"
    assert run("vnncomp", "export", "--out", str(out), "--samples", "2", "--models", "LPD-MLP-B-0.1") == 0
    lines = (out / "instances.csv").read_text().splitlines()
    assert lines == [f"onnx/LPD-MLP-B-0.1.onnx,vnnlib/LPD-MLP-B-0.1_eps0.1_{i},300".replace(f"_{i},", f"_{i}.vnnlib,")
                     for i in range(2)]
    assert run("vnncomp", "run", str(out / "instances.csv"), "--method", "crown", "--out", str(tmp_path / "r")) == 0
    assert "2 instance(s)" in capsys.readouterr().out
    assert run("vnncomp", "run", str(out / "instances.csv"), "--method", "nope") == 2
    assert "unknown method" in capsys.readouterr().err
    assert run("vnncomp", "export", "--models", "NOR-CNN-SMALL", "--out", str(out)) == 2
    assert run("vnncomp", "onnx", "NOR-CNN-SMALL", str(tmp_path / "cnn.onnx")) == 0
    from lpbench.zoo import load_model
    x = RNG.random((2, 1, 28, 28)).astype(np.float32)
    assert np.array_equal(load_onnx(tmp_path / "cnn.onnx").network.logits64(x), load_model("NOR-CNN-SMALL").logits64(x))


def test_sweep_over_an_instance_list(tmp_path):
    """A sweep file naming an instances.csv: one task per (row, method) on a dask cluster, the
    answers stored as outcomes (unsat = verified, sat = falsified), resumable, with status."""
    from lpbench.store import Store
    from lpbench.sweep import load_spec, run_sweep
    from lpbench.sweep.results import status
    bench = tmp_path / "bench"
    net = _tiny_relu_net(3, n_in=4, n_out=3)
    x = np.random.default_rng(3).random((4, 4)).astype(np.float32)
    labels = net.logits64(x).argmax(1)
    rows = write_robustness_instances(bench, net, "tiny", x, labels, range(4), (0.01, 0.5), 20.0)
    rows.append(("onnx/missing.onnx", rows[0][1], 20.0))
    write_instances_csv(bench, rows)
    sweep_file = tmp_path / "vnn.toml"
    sweep_file.write_text('name = "vnn"\ninstances = "bench/instances.csv"\nmethods = ["crown", "milp"]\n'
                          '[options.pgd]\nsteps = 10\nrestarts = 1\n')
    spec = load_spec(sweep_file)
    store = tmp_path / "s.sqlite"
    report = run_sweep(spec, store, workers=1)
    assert report.written == 2 * len(rows) and run_sweep(spec, store, workers=1).written == 0
    direct = run_instances(bench / "instances.csv", "milp", tmp_path / "direct", {"pgd": {"steps": 10, "restarts": 1}})
    word = {"verified": "unsat", "falsified": "sat"}
    with Store(store) as st:
        frame = st.frame()
        milp = frame[frame.method == "milp"].sort_values("sample")
        got = [word.get(s, s) for s in milp.status]
        assert got == [r["result"] for r in direct] and got[-1] == "error"
        assert {"sat", "unsat"} <= set(got)
        df = status(st, "vnn")
        assert list(df.done) == [len(rows)] * 2 and list(df.samples) == [len(rows)] * 2

"""Optimizer steps checked against hand-written formulas (plain Python floats),
gradient clipping, weight decay, state round trips and name lookup."""

import math

import numpy as np
import pytest

from mlpcli.nn import optimizers

P0 = [1.0, -2.0, 0.5]
G1 = [0.1, -0.3, 0.2]
G2 = [-0.2, 0.05, 0.2]
LR = 0.1


def run(name, steps, lr=LR, p0=P0, **hyper):
    """Apply ``steps`` (lists of gradients) to a float32 copy of ``p0``; the
    parameters after each step."""
    opt = optimizers.get(name)(**hyper)
    p = np.array(p0, np.float32)
    opt.build([p])
    out = []
    for g in steps:
        opt.apply([p], [np.array(g, np.float32)], lr)
        assert p.dtype == np.float32
        out.append(p.copy())
    return out


def close(actual, expected, rtol=2e-6, atol=1e-7):
    np.testing.assert_allclose(actual, np.array(expected), rtol=rtol, atol=atol)


# ------------------------------------------------------------------ SGD family

def test_sgd_plain():
    (p1,) = run("sgd", [G1])
    close(p1, [p - LR * g for p, g in zip(P0, G1)])


def test_sgd_momentum_two_steps():
    mu = 0.9
    p1, p2 = run("sgd", [G1, G2], momentum=mu)
    m1 = [-LR * g for g in G1]
    e1 = [p + m for p, m in zip(P0, m1)]
    m2 = [mu * m - LR * g for m, g in zip(m1, G2)]
    e2 = [p + m for p, m in zip(e1, m2)]
    close(p1, e1)
    close(p2, e2)


def test_sgd_nesterov_two_steps():
    mu = 0.8
    p1, p2 = run("sgd", [G1, G2], momentum=mu, nesterov=True)
    m1 = [-LR * g for g in G1]
    e1 = [p + mu * m - LR * g for p, m, g in zip(P0, m1, G1)]
    m2 = [mu * m - LR * g for m, g in zip(m1, G2)]
    e2 = [p + mu * m - LR * g for p, m, g in zip(e1, m2, G2)]
    close(p1, e1)
    close(p2, e2)
    # really different from classical momentum
    assert not np.allclose(p2, run("sgd", [G1, G2], momentum=mu)[1])


# -------------------------------------------------------------------- RMSprop

def test_rmsprop_plain():
    rho, eps = 0.9, 1e-7
    p1, p2 = run("rmsprop", [G1, G2])
    v1 = [(1 - rho) * g * g for g in G1]
    e1 = [p - LR * g / math.sqrt(v + eps) for p, g, v in zip(P0, G1, v1)]
    v2 = [rho * v + (1 - rho) * g * g for v, g in zip(v1, G2)]
    e2 = [p - LR * g / math.sqrt(v + eps) for p, g, v in zip(e1, G2, v2)]
    close(p1, e1)
    close(p2, e2)


def test_rmsprop_centered():
    rho, eps = 0.8, 1e-7
    p1, p2 = run("rmsprop", [G1, G2], rho=rho, centered=True)
    v1 = [(1 - rho) * g * g for g in G1]
    a1 = [(1 - rho) * g for g in G1]
    e1 = [p - LR * g / math.sqrt(v - a * a + eps) for p, g, v, a in zip(P0, G1, v1, a1)]
    v2 = [rho * v + (1 - rho) * g * g for v, g in zip(v1, G2)]
    a2 = [rho * a + (1 - rho) * g for a, g in zip(a1, G2)]
    e2 = [p - LR * g / math.sqrt(v - a * a + eps) for p, g, v, a in zip(e1, G2, v2, a2)]
    close(p1, e1, rtol=1e-5)
    close(p2, e2, rtol=1e-5)


def test_rmsprop_momentum_two_steps():
    rho, eps, mu = 0.9, 1e-7, 0.5
    p1, p2 = run("rmsprop", [G1, G2], momentum=mu)
    v1 = [(1 - rho) * g * g for g in G1]
    m1 = [LR * g / math.sqrt(v + eps) for g, v in zip(G1, v1)]
    e1 = [p - m for p, m in zip(P0, m1)]
    v2 = [rho * v + (1 - rho) * g * g for v, g in zip(v1, G2)]
    m2 = [mu * m + LR * g / math.sqrt(v + eps) for m, g, v in zip(m1, G2, v2)]
    e2 = [p - m for p, m in zip(e1, m2)]
    close(p1, e1)
    close(p2, e2)


# ------------------------------------------------------------ Adagrad, Adadelta

def test_adagrad_two_steps():
    eps = 1e-7
    p1, p2 = run("adagrad", [G1, G2])
    a1 = [0.1 + g * g for g in G1]  # initial_accumulator_value 0.1
    e1 = [p - LR * g / math.sqrt(a + eps) for p, g, a in zip(P0, G1, a1)]
    a2 = [a + g * g for a, g in zip(a1, G2)]
    e2 = [p - LR * g / math.sqrt(a + eps) for p, g, a in zip(e1, G2, a2)]
    close(p1, e1)
    close(p2, e2)


def test_adadelta_two_steps():
    rho, eps, lr = 0.95, 1e-7, 1.0
    p1, p2 = run("adadelta", [G1, G2], lr=lr)
    ag1 = [(1 - rho) * g * g for g in G1]
    d1 = [-math.sqrt(0 + eps) * g / math.sqrt(a + eps) for g, a in zip(G1, ag1)]
    ad1 = [(1 - rho) * d * d for d in d1]
    e1 = [p + lr * d for p, d in zip(P0, d1)]
    ag2 = [rho * a + (1 - rho) * g * g for a, g in zip(ag1, G2)]
    d2 = [-math.sqrt(ad + eps) * g / math.sqrt(a + eps) for g, a, ad in zip(G2, ag2, ad1)]
    e2 = [p + lr * d for p, d in zip(e1, d2)]
    close(p1, e1)
    close(p2, e2)


# ------------------------------------------------------------------ Adam family

def adam_reference(steps, lr=LR, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False, wd=0.0):
    p, m, v, vhat = list(P0), [0.0] * 3, [0.0] * 3, [0.0] * 3
    out = []
    for t, g in enumerate(steps, start=1):
        p = [x * (1 - wd * lr) for x in p]
        m = [b1 * a + (1 - b1) * b for a, b in zip(m, g)]
        v = [b2 * a + (1 - b2) * b * b for a, b in zip(v, g)]
        vhat = [max(a, b) for a, b in zip(vhat, v)]
        alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        use = vhat if amsgrad else v
        p = [x - a * alpha / (math.sqrt(b) + eps) for x, a, b in zip(p, m, use)]
        out.append(p)
    return out


def test_adam_two_steps():
    p1, p2 = run("adam", [G1, G2])
    # step 1 by hand: m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1
    e1 = [p - (0.1 * g) * (LR * math.sqrt(0.001) / 0.1) / (math.sqrt(0.001 * g * g) + 1e-7)
          for p, g in zip(P0, G1)]
    close(p1, e1)
    r1, r2 = adam_reference([G1, G2])
    close(p1, r1)
    close(p2, r2)


def test_adam_amsgrad_two_steps():
    g2 = [0.001, -0.3, 0.0]  # tiny second gradients: v shrinks, v_hat keeps the max
    p1, p2 = run("adam", [G1, g2], amsgrad=True)
    r1, r2 = adam_reference([G1, g2], amsgrad=True)
    close(p1, r1)
    close(p2, r2)
    plain = adam_reference([G1, g2])[1]
    assert abs(plain[0] - r2[0]) > 1e-5  # the max really mattered for entry 0 (float32 eps ~1e-7)


def test_adamw_default_decay_two_steps():
    lr = 0.5  # large enough that the 0.004 decay is far above float32 noise
    p1, p2 = run("adamw", [G1, G2], lr=lr)
    r1, r2 = adam_reference([G1, G2], lr=lr, wd=0.004)
    close(p1, r1)
    close(p2, r2)
    plain = adam_reference([G1, G2], lr=lr)[1]
    assert abs(plain[0] - r2[0]) > 1e-3


def test_adamax_two_steps():
    b1, b2, eps = 0.9, 0.999, 1e-7
    p1, p2 = run("adamax", [G1, G2])
    m1 = [(1 - b1) * g for g in G1]
    u1 = [abs(g) for g in G1]
    e1 = [p - LR * m / ((1 - b1) * (u + eps)) for p, m, u in zip(P0, m1, u1)]
    m2 = [b1 * m + (1 - b1) * g for m, g in zip(m1, G2)]
    u2 = [max(b2 * u, abs(g)) for u, g in zip(u1, G2)]
    e2 = [p - LR * m / ((1 - b1 ** 2) * (u + eps)) for p, m, u in zip(e1, m2, u2)]
    close(p1, e1)
    close(p2, e2)


def test_nadam_two_steps():
    b1, b2, eps = 0.9, 0.999, 1e-7

    def mu(t):
        return b1 * (1 - 0.5 * 0.96 ** t)

    p1, p2 = run("nadam", [G1, G2])
    # step 1: u_product = mu(1)
    m1 = [(1 - b1) * g for g in G1]
    v1 = [(1 - b2) * g * g for g in G1]
    e1 = []
    for p, g, m, v in zip(P0, G1, m1, v1):
        m_hat = mu(2) * m / (1 - mu(1) * mu(2)) + (1 - mu(1)) * g / (1 - mu(1))
        v_hat = v / (1 - b2)
        e1.append(p - LR * m_hat / (math.sqrt(v_hat) + eps))
    # step 2: u_product = mu(1) mu(2)
    m2 = [b1 * m + (1 - b1) * g for m, g in zip(m1, G2)]
    v2 = [b2 * v + (1 - b2) * g * g for v, g in zip(v1, G2)]
    e2 = []
    for p, g, m, v in zip(e1, G2, m2, v2):
        m_hat = (mu(3) * m / (1 - mu(1) * mu(2) * mu(3))
                 + (1 - mu(2)) * g / (1 - mu(1) * mu(2)))
        v_hat = v / (1 - b2 ** 2)
        e2.append(p - LR * m_hat / (math.sqrt(v_hat) + eps))
    close(p1, e1)
    close(p2, e2)


# --------------------------------------------------------------- every config

ALL_CONFIGS = [
    ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", {}), ("rmsprop", {"centered": True}), ("rmsprop", {"momentum": 0.9}),
    ("rmsprop", {"momentum": 0.5, "centered": True}),
    ("adagrad", {}), ("adadelta", {}), ("adam", {}), ("adam", {"amsgrad": True}),
    ("adamw", {}), ("adamax", {}), ("nadam", {}),
]
IDS = [n + "".join(f"-{k}" for k in h) for n, h in ALL_CONFIGS]


def test_all_optimizers_listed():
    assert {n for n, _ in ALL_CONFIGS} == set(optimizers.OPTIMIZERS)


def _arrays(seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)]


@pytest.mark.parametrize("name,hyper", ALL_CONFIGS, ids=IDS)
def test_state_round_trip_continues_identically(name, hyper):
    grads = [_arrays(100 + i) for i in range(6)]
    a_params, b_params = _arrays(0), None
    a = optimizers.get(name)(**hyper)
    a.build(a_params)
    for g in grads[:3]:
        a.apply(a_params, g, 0.01)
    state = a.get_state()
    assert int(state["iterations"]) == 3
    b_params = [p.copy() for p in a_params]
    b = optimizers.get(name)(**hyper)
    b.build(b_params)
    b.set_state(state)
    for g in grads[3:]:
        a.apply(a_params, g, 0.01)
        b.apply(b_params, g, 0.01)
    for pa, pb in zip(a_params, b_params):
        np.testing.assert_array_equal(pa, pb)
        assert pa.dtype == np.float32
    # a fresh optimizer (no state) would have ended elsewhere, unless it keeps none
    c_params = [p.copy() for p in b_params]
    if len(state) > 1:
        c = optimizers.get(name)(**hyper)
        c.build(c_params)
        d_params = [p.copy() for p in c_params]
        b.apply(d_params, grads[0], 0.01)
        c.apply(c_params, grads[0], 0.01)
        assert not all(np.array_equal(x, y) for x, y in zip(c_params, d_params))


@pytest.mark.parametrize("name,hyper", ALL_CONFIGS, ids=IDS)
def test_state_is_a_snapshot(name, hyper):
    params = _arrays(1)
    opt = optimizers.get(name)(**hyper)
    opt.build(params)
    opt.apply(params, _arrays(2), 0.01)
    state = opt.get_state()
    frozen = {k: np.array(v, copy=True) for k, v in state.items()}
    opt.apply(params, _arrays(3), 0.01)
    for k in state:
        np.testing.assert_array_equal(state[k], frozen[k])


@pytest.mark.parametrize("name,hyper", ALL_CONFIGS, ids=IDS)
def test_slots_stay_float32_and_shaped(name, hyper):
    params = _arrays(1)
    opt = optimizers.get(name)(**hyper)
    opt.build(params)
    for i in range(3):
        opt.apply(params, _arrays(10 + i), 0.01)
    assert opt.iterations == 3
    for arrays in opt.slots.values():
        for a, p in zip(arrays, params, strict=True):
            assert a.dtype == np.float32 and a.shape == p.shape
    assert all(p.dtype == np.float32 for p in params)


def test_nadam_state_carries_momentum_product():
    params = _arrays(0)
    opt = optimizers.get("nadam")()
    opt.build(params)
    opt.apply(params, _arrays(1), 0.01)
    opt.apply(params, _arrays(2), 0.01)
    state = opt.get_state()
    mu = [0.9 * (1 - 0.5 * 0.96 ** t) for t in (1, 2)]
    assert float(state["u_product"]) == pytest.approx(mu[0] * mu[1], rel=1e-12)


# ------------------------------------------------------------------- clipping

def _sgd_step(grads, lr=1.0, **hyper):
    params = [np.zeros(len(g), np.float32) for g in grads]
    opt = optimizers.get("sgd")(**hyper)
    opt.build(params)
    opt.apply(params, [np.array(g, np.float32) for g in grads], lr)
    return [-p for p in params]  # with lr 1 and zero params: the clipped gradients


def test_clipnorm_is_per_array():
    big, small = [3.0, 4.0], [0.3, 0.4]  # norms 5 and 0.5
    out_big, out_small = _sgd_step([big, small], clipnorm=1.0)
    close(out_big, [0.6, 0.8])
    close(out_small, small)


def test_global_clipnorm_scales_all_arrays_together():
    big, small = [3.0, 4.0], [0.3, 0.4]
    scale = 1.0 / math.sqrt(25 + 0.25)
    out_big, out_small = _sgd_step([big, small], global_clipnorm=1.0)
    close(out_big, [3 * scale, 4 * scale])
    close(out_small, [0.3 * scale, 0.4 * scale])
    # under the threshold nothing changes
    out_big, out_small = _sgd_step([big, small], global_clipnorm=10.0)
    close(out_big, big)
    close(out_small, small)


def test_clipvalue():
    (out,) = _sgd_step([[3.0, -4.0, 0.2, -0.5]], clipvalue=0.5)
    close(out, [0.5, -0.5, 0.2, -0.5])


def test_clipping_happens_before_adam_statistics():
    """Clipped gradients feed the slots: m after one step is (1 - beta_1) * clipped."""
    p = np.zeros(2, np.float32)
    opt = optimizers.get("adam")(clipnorm=1.0)
    opt.build([p])
    opt.apply([p], [np.array([3.0, 4.0], np.float32)], 0.01)
    close(opt.get_state()["m/0"], [0.1 * 0.6, 0.1 * 0.8])


def test_zero_gradient_with_clipnorm_is_fine():
    (out,) = _sgd_step([[0.0, 0.0]], clipnorm=1.0)
    assert np.isfinite(out).all() and (out == 0).all()


# --------------------------------------------------------------- weight decay

def test_weight_decay_is_decoupled_and_applied_first_with_current_lr():
    wd, lr = 0.1, 0.5
    # the constructor's learning_rate is not the one used: apply's lr is
    (p1,) = run("sgd", [G1], lr=lr, learning_rate=0.001, weight_decay=wd)
    before = [p * (1 - wd * lr) - lr * g for p, g in zip(P0, G1)]
    after = [(p - lr * g) * (1 - wd * lr) for p, g in zip(P0, G1)]
    close(p1, before)
    assert not np.allclose(p1, after, rtol=1e-4)


def test_weight_decay_with_adam_on_two_steps():
    lr = 0.2
    p1, p2 = run("adam", [G1, G2], lr=lr, weight_decay=0.05)
    r1, r2 = adam_reference([G1, G2], lr=lr, wd=0.05)
    close(p1, r1)
    close(p2, r2)


def test_weight_decay_shrinks_params_without_gradient():
    (p1,) = run("sgd", [[0.0, 0.0, 0.0]], lr=0.1, weight_decay=0.5)
    close(p1, [p * 0.95 for p in P0])


# ------------------------------------------------------------ names and config

def test_unknown_optimizer_suggests_close_name():
    with pytest.raises(ValueError, match="did you mean 'adam'"):
        optimizers.get("adamm")
    with pytest.raises(ValueError, match="unknown optimizer"):
        optimizers.get("lbfgs")


def test_get_is_case_insensitive():
    assert optimizers.get("Adam") is optimizers.Adam
    assert optimizers.get("RMSPROP") is optimizers.RMSprop


def test_unknown_hyperparameter_rejected():
    with pytest.raises(ValueError, match="beta1"):
        optimizers.get("adam")(beta1=0.5)


def test_defaults_follow_keras():
    assert optimizers.OPTIMIZERS.spec("sgd").defaults()["learning_rate"] == 0.01
    assert optimizers.OPTIMIZERS.spec("adam").defaults()["epsilon"] == 1e-7
    assert optimizers.OPTIMIZERS.spec("adamw").defaults()["weight_decay"] == 0.004
    assert optimizers.OPTIMIZERS.spec("adam").defaults()["weight_decay"] is None
    assert optimizers.OPTIMIZERS.spec("adadelta").defaults()["rho"] == 0.95
    assert optimizers.OPTIMIZERS.spec("adagrad").defaults()["initial_accumulator_value"] == 0.1
    cfg = optimizers.get("rmsprop")(rho=0.8).get_config()
    assert cfg["name"] == "rmsprop" and cfg["rho"] == 0.8 and cfg["learning_rate"] == 0.001


def test_optimizer_updates_every_array_in_place():
    params = _arrays(0)
    ids = [id(p) for p in params]
    before = [p.copy() for p in params]
    opt = optimizers.get("adam")()
    opt.build(params)
    opt.apply(params, _arrays(5), 0.01)
    assert [id(p) for p in params] == ids
    assert all(not np.array_equal(a, b) for a, b in zip(params, before))


def _adam_whole_arrays(p, steps, lr, amsgrad=False, weight_decay=None):
    """Adam's float32 operations of ``Adam._update_piece`` (with weight decay first) done on
    whole arrays, one numpy call per operation: what updating in pieces must equal bit for bit."""
    b1, b2, eps = np.float32(0.1), np.float32(0.001), np.float32(1e-7)
    m, v, v_hat = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(steps, 1):
        if weight_decay:
            p *= np.float32(1.0 - weight_decay * lr)
        alpha = np.float32(lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t))
        m += (g - m) * b1
        v += (g * g - v) * b2
        if amsgrad:
            np.maximum(v_hat, v, out=v_hat)
        p -= (m / (np.sqrt(v_hat if amsgrad else v) + eps)) * alpha
    return p


@pytest.mark.parametrize("hyper", [{}, {"amsgrad": True}, {"weight_decay": 0.01}], ids=["plain", "amsgrad", "decay"])
def test_adam_in_pieces_equals_whole_arrays(hyper):
    """An array of several pieces (and a ragged last one), updated through ``apply`` and, a
    share of it, through ``apply_in_pieces`` as a process of several does: the same bits as
    the operations on whole arrays."""
    size = 2 * optimizers.PIECE + 77
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(size).astype(np.float32)
    steps = [rng.standard_normal(size).astype(np.float32) * np.float32(s) for s in (0.1, 1e-3, 3.0)]
    expected = _adam_whole_arrays(p0.copy(), steps, 0.01, **hyper)

    whole = p0.copy()
    opt = optimizers.get("adam")(**hyper)
    opt.build([whole])
    for g in steps:
        opt.apply([whole], [g], 0.01)
    np.testing.assert_array_equal(whole, expected)

    shared = p0.copy()
    opt = optimizers.get("adam")(**hyper)
    opt.build([shared])
    share = slice(5, size)  # a process's share, starting off a piece boundary
    asked = []
    for g in steps:
        def gradient_of(piece, g=g):
            asked.append(piece)
            return g[piece]
        opt.apply_in_pieces(shared[share], gradient_of, 0.01, share)
    np.testing.assert_array_equal(shared[share], expected[share])
    np.testing.assert_array_equal(shared[:5], p0[:5])  # outside the share: untouched
    assert all(p.stop - p.start <= optimizers.PIECE for p in asked) and len(asked) == 3 * 3

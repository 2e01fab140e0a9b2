"""Optimizers with Keras 3's update rules, defaults and epsilon placement.

Lifecycle: ``opt = get("adam")(learning_rate=1e-3)``; ``opt.build(params)``
allocates the slot arrays; ``opt.apply(params, grads, lr)`` clips the
gradients, applies decoupled weight decay and updates every float32 array in
``params`` in place. ``get_state``/``set_state`` carry the slots and the step
counter through checkpoints.
"""

import numpy as np

from mlpcli.nn.spec import BOOLEAN, Component, Param, Registry, number

_F = np.float32
# float32s per piece of an update done in pieces (Adam's; several processes' mixing with
# it): the five arrays a piece touches (weights, gradient, two moments, scratch), 1.25 MiB,
# stay in the cache across the update's ten passes instead of streaming from memory (measured:
# 65,536 beat 16,384-32,768, with the numpy calls per piece, and whole arrays of the wide model)
PIECE = 1 << 16


def _learning_rate(default):
    return Param("learning_rate", default, number(0, closed="right"), "the step size (a schedule starts from it)")


def _weight_decay(default):
    return Param("weight_decay", default, number(0, nullable=default is None),
                 "decoupled weight decay: w -= w·weight_decay·lr before the update")


_CLIPPING = (
    Param("clipnorm", None, number(0, closed="right", nullable=True), "clip each gradient array to this L2 norm"),
    Param("clipvalue", None, number(0, closed="right", nullable=True), "clip each gradient element to ±this"),
    Param("global_clipnorm", None, number(0, closed="right", nullable=True), "clip all gradients together to this norm"),
)
# every optimizer takes these after its own parameters
COMMON = (_weight_decay(None), *_CLIPPING)
_UNIT = number(0, 1, closed="left")
_EPSILON = Param("epsilon", 1e-7, number(0, closed="right"), "added to the denominator for stability")
_BETA_1 = Param("beta_1", 0.9, _UNIT, "decay of the first-moment average")
_BETA_2 = Param("beta_2", 0.999, _UNIT, "decay of the second-moment average")


class Optimizer:
    """Base class: gradient clipping, weight decay, step counter and slots."""

    spec = Component("", "")
    slot_names = ()

    def __init__(self, **hyper):
        defaults = self.spec.defaults()
        unknown = set(hyper) - set(defaults)
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {sorted(unknown)}")
        self.hyper = {**defaults, **hyper}
        for key, value in self.hyper.items():
            setattr(self, key, value)
        self.iterations = 0
        self.slots = {}
        self.part = None

    def build(self, params, empty_like=np.empty_like):
        """Slots for ``params``, allocated by ``empty_like`` (e.g. in shared memory)."""
        self.slots = {name: [self._initial_slot(name, p, empty_like) for p in params]
                      for name in self.slot_names}
        # scratch space for a piece, so updates allocate nothing in the training loop
        self.scratch = np.empty(min(PIECE, max((p.size for p in params), default=0)), np.float32)
        self.part = None

    def _initial_slot(self, name, param, empty_like):
        slot = empty_like(param)
        slot[...] = 0
        return slot

    def apply(self, params, grads, lr, part=None):
        """One update of every array in ``params`` (in place) at learning rate ``lr``.

        ``part``: a slice of the one array the optimizer was built on; ``params``
        and ``grads`` are that part (one process's share, see ``mlpcli/parallel.py``).
        """
        grads = self._clip(grads)
        self._decay(params, lr)
        self.part = part
        self._before_step()
        for i, (p, g) in enumerate(zip(params, grads)):
            self.update(i, p, g, _F(lr))
        self.iterations += 1

    def apply_in_pieces(self, params, gradient_of, lr, part):
        """``apply`` to ``params``, the part ``part`` (a slice) of the one array the optimizer
        was built on, whose gradient is made a piece at a time: ``gradient_of(piece)``, for a
        slice ``piece`` of ``part``, returns the gradient there; each piece is updated while
        its gradient is still in the cache. Element for element the same arithmetic as
        ``apply`` (no clipping by norm, which needs the whole gradient)."""
        assert not (self.clipnorm or self.global_clipnorm), "clipping by norm needs the whole gradient"
        self._before_step()
        for start in range(part.start, part.stop, PIECE):
            piece = slice(start, min(start + PIECE, part.stop))
            p = params[start - part.start:piece.stop - part.start]
            (g,) = self._clip([gradient_of(piece)])
            self._decay([p], lr)
            self.part = piece
            self.update(0, p, g, _F(lr))
        self.iterations += 1

    def _decay(self, params, lr):
        if self.weight_decay:
            for p in params:
                p *= _F(1.0 - self.weight_decay * lr)

    def _before_step(self):
        """Per-step work shared by all variables (Nadam's momentum product)."""

    def update(self, i, p, g, lr):
        raise NotImplementedError

    def _clip(self, grads):
        if self.clipnorm:
            return [g * _F(self.clipnorm / max(float(np.sqrt(np.square(g).sum())), self.clipnorm))
                    for g in grads]
        if self.global_clipnorm:
            norm = float(np.sqrt(sum(float(np.square(g).sum()) for g in grads)))
            scale = _F(self.global_clipnorm / max(norm, self.global_clipnorm))
            return [g * scale for g in grads]
        if self.clipvalue:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def slot(self, name, i):
        return self.slots[name][i] if self.part is None else self.slots[name][i][self.part]

    @property
    def name(self):
        return self.spec.name

    def get_config(self):
        """Hyperparameters, under Keras's names."""
        return {"name": self.name, **self.spec.to_keras(self.hyper)}

    def get_state(self):
        """{"iterations": int, "<slot>/<i>": array, ...} for checkpoints."""
        state = {"iterations": np.int64(self.iterations)}
        for name, arrays in self.slots.items():
            for i, a in enumerate(arrays):
                state[f"{name}/{i}"] = a.copy()  # a snapshot, not the live slot
        return state

    def set_state(self, state):
        self.iterations = int(state["iterations"])
        for name, arrays in self.slots.items():
            for i, a in enumerate(arrays):
                a[...] = state[f"{name}/{i}"]


class SGD(Optimizer):
    spec = Component("sgd", "gradient descent, with momentum", (
        _learning_rate(0.01), Param("momentum", 0.0, _UNIT, "the velocity's decay (0: none)"),
        Param("nesterov", False, BOOLEAN, "Nesterov momentum"), *COMMON), keras="SGD")

    @property
    def slot_names(self):
        return ("momentum",) if self.momentum else ()

    def update(self, i, p, g, lr):
        if not self.momentum:
            p -= lr * g
            return
        m = self.slot("momentum", i)
        m *= _F(self.momentum)
        m -= lr * g
        if self.nesterov:
            p += _F(self.momentum) * m - lr * g
        else:
            p += m


class RMSprop(Optimizer):
    spec = Component("rmsprop", "divides by a moving root mean square of the gradients", (
        _learning_rate(0.001), Param("rho", 0.9, _UNIT, "decay of the squared-gradient average"),
        Param("momentum", 0.0, _UNIT, "the velocity's decay (0: none)"), _EPSILON,
        Param("centered", False, BOOLEAN, "divide by the gradients' variance, not their mean square"),
        *COMMON), keras="RMSprop")

    @property
    def slot_names(self):
        return ("velocity",) + (("momentum",) if self.momentum else ()) + (
            ("average_gradient",) if self.centered else ())

    def update(self, i, p, g, lr):
        rho = _F(self.rho)
        v = self.slot("velocity", i)
        v *= rho
        v += (1 - rho) * g * g
        if self.centered:
            avg = self.slot("average_gradient", i)
            avg *= rho
            avg += (1 - rho) * g
            denominator = v - avg * avg + _F(self.epsilon)
        else:
            denominator = v + _F(self.epsilon)
        increment = lr * g / np.sqrt(denominator)
        if self.momentum:
            m = self.slot("momentum", i)
            m *= _F(self.momentum)
            m += increment
            p -= m
        else:
            p -= increment


class Adagrad(Optimizer):
    spec = Component("adagrad", "divides by the root of all squared gradients so far", (
        _learning_rate(0.001),
        Param("initial_accumulator_value", 0.1, number(0), "the accumulators' starting value"),
        _EPSILON, *COMMON), keras="Adagrad")
    slot_names = ("accumulator",)

    def _initial_slot(self, name, param, empty_like):
        slot = empty_like(param)
        slot[...] = self.initial_accumulator_value
        return slot

    def update(self, i, p, g, lr):
        acc = self.slot("accumulator", i)
        acc += g * g
        p -= lr * g / np.sqrt(acc + _F(self.epsilon))


class Adadelta(Optimizer):
    spec = Component("adadelta", "steps scaled by moving averages of updates and gradients", (
        _learning_rate(0.001), Param("rho", 0.95, _UNIT, "decay of the moving averages"), _EPSILON,
        *COMMON), keras="Adadelta")
    slot_names = ("accumulated_grad", "accumulated_delta_var")

    def update(self, i, p, g, lr):
        rho, eps = _F(self.rho), _F(self.epsilon)
        acc_g = self.slot("accumulated_grad", i)
        acc_d = self.slot("accumulated_delta_var", i)
        acc_g *= rho
        acc_g += (1 - rho) * g * g
        delta = -np.sqrt(acc_d + eps) * g / np.sqrt(acc_g + eps)
        acc_d *= rho
        acc_d += (1 - rho) * delta * delta
        p += lr * delta


ADAM_PARAMS = (_learning_rate(0.001), _BETA_1, _BETA_2, _EPSILON,
               Param("amsgrad", False, BOOLEAN, "use the maximum of past second moments"))


class Adam(Optimizer):
    spec = Component("adam", "adaptive moment estimation", (
        *ADAM_PARAMS, *COMMON), keras="Adam")

    @property
    def slot_names(self):
        return ("m", "v") + (("v_hat",) if self.amsgrad else ())

    def update(self, i, p, g, lr):
        """In pieces of ``PIECE`` values (see there), each through all of the update's passes."""
        t = self.iterations + 1
        alpha = _F(lr * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t))
        arrays = [a.reshape(-1) for a in (p, g, self.slot("m", i), self.slot("v", i))]
        if self.amsgrad:
            arrays.append(self.slot("v_hat", i).reshape(-1))
        for start in range(0, p.size, PIECE):
            self._update_piece(alpha, *(a[start:start + PIECE] for a in arrays))

    def _update_piece(self, alpha, p, g, m, v, v_hat=None):
        tmp = self.scratch[:p.size]
        np.subtract(g, m, out=tmp)  # m += (g - m) * (1 - beta_1)
        tmp *= _F(1 - self.beta_1)
        m += tmp
        np.multiply(g, g, out=tmp)  # v += (g*g - v) * (1 - beta_2)
        tmp -= v
        tmp *= _F(1 - self.beta_2)
        v += tmp
        if v_hat is not None:
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        np.sqrt(v, out=tmp)  # p -= alpha * m / (sqrt(v) + epsilon)
        tmp += _F(self.epsilon)
        np.divide(m, tmp, out=tmp)
        tmp *= alpha
        p -= tmp


class AdamW(Adam):
    spec = Component("adamw", "adam with decoupled weight decay", (
        *ADAM_PARAMS, _weight_decay(0.004), *_CLIPPING), keras="AdamW")


class Adamax(Optimizer):
    spec = Component("adamax", "adam with the infinity norm", (
        _learning_rate(0.001), _BETA_1, _BETA_2, _EPSILON, *COMMON), keras="Adamax")
    slot_names = ("m", "u")

    def update(self, i, p, g, lr):
        t = self.iterations + 1
        m, u = self.slot("m", i), self.slot("u", i)
        m += (g - m) * _F(1 - self.beta_1)
        np.maximum(_F(self.beta_2) * u, np.abs(g), out=u)
        p -= lr * m / (_F(1 - self.beta_1 ** t) * (u + _F(self.epsilon)))


class Nadam(Optimizer):
    spec = Component("nadam", "adam with Nesterov momentum", (
        _learning_rate(0.001), _BETA_1, _BETA_2, _EPSILON, *COMMON), keras="Nadam")
    slot_names = ("m", "v")

    def __init__(self, **hyper):
        super().__init__(**hyper)
        self.u_product = 1.0

    def _momentum_cache(self, step):
        return self.beta_1 * (1.0 - 0.5 * 0.96 ** step)

    def _before_step(self):
        self.u_product *= self._momentum_cache(self.iterations + 1)

    def update(self, i, p, g, lr):
        t = self.iterations + 1
        u_t, u_t1 = self._momentum_cache(t), self._momentum_cache(t + 1)
        u_prod_t1 = self.u_product * u_t1
        m, v = self.slot("m", i), self.slot("v", i)
        m += (g - m) * _F(1 - self.beta_1)
        v += (g * g - v) * _F(1 - self.beta_2)
        m_hat = _F(u_t1 / (1 - u_prod_t1)) * m + _F((1 - u_t) / (1 - self.u_product)) * g
        v_hat = v / _F(1 - self.beta_2 ** t)
        p -= m_hat * lr / (np.sqrt(v_hat) + _F(self.epsilon))

    def get_state(self):
        return {**super().get_state(), "u_product": np.float64(self.u_product)}

    def set_state(self, state):
        super().set_state(state)
        self.u_product = float(state["u_product"])


OPTIMIZERS = Registry("optimizer", [SGD, RMSprop, Adagrad, Adadelta, Adam, AdamW, Adamax, Nadam])


def get(name):
    """The optimizer class called ``name``."""
    return OPTIMIZERS.lookup(name)


def from_config(spec):
    """The optimizer ``{"type": name, **hyperparameters}`` describes, not yet built."""
    params = {k: v for k, v in spec.items() if k != "type"}
    return get(spec["type"])(**params)

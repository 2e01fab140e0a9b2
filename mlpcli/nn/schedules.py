"""Learning-rate schedules.

A schedule gives the learning rate for the next batch from the global step
(batches done) and the epoch (0-based); ``on_epoch_end`` lets
reduce-on-plateau react to the epoch's metrics. ``get_state``/``set_state``
carry what it learned through checkpoints.
"""

import math

from mlpcli.nn.metrics import MODES, higher_is_better
from mlpcli.nn.spec import BOOLEAN, STRING, Component, Param, Registry, choice, integer, number


class Schedule:
    spec = Component("", "")
    per_step = False  # True: the rate changes within an epoch

    def __init__(self, learning_rate, run_steps=None, **params):
        """``run_steps``: the batches the whole run will take (epochs x batches per epoch),
        for schedules whose length defaults to the run."""
        self.initial = float(learning_rate)
        self.params = {**self.spec.defaults(), **params}
        for key, value in self.params.items():
            setattr(self, key, value)
        self.run_steps = run_steps

    def __call__(self, step, epoch):
        return self.initial

    def on_epoch_end(self, epoch, logs):
        """Called with the epoch's logs; schedules that watch metrics override it."""

    def get_state(self):
        return {}

    def set_state(self, state):
        """Restore what ``get_state`` returned."""

    @property
    def name(self):
        return self.spec.name

    def get_config(self):
        return {"type": self.name, **self.params}


class Constant(Schedule):
    spec = Component("constant", "`learning_rate` throughout")


class ExponentialDecay(Schedule):
    """lr * decay_rate ** (step / decay_steps), floored when ``staircase``."""

    spec = Component("exponential_decay", "`lr · decay_rate^(step / decay_steps)` per batch", (
        Param("decay_steps", 1000, integer(1), "batches per decay_rate factor"),
        Param("decay_rate", 0.96, number(0, closed="right"), "the factor per decay_steps batches"),
        Param("staircase", False, BOOLEAN, "decay in whole steps (floor of step / decay_steps)"),
    ), keras="ExponentialDecay")
    per_step = True

    def __call__(self, step, epoch):
        p = step / self.decay_steps
        try:
            return self.initial * self.decay_rate ** (math.floor(p) if self.staircase else p)
        except OverflowError:  # a decay_rate above 1 grows the rate past any float: training stops on it
            return math.inf


class StepDecay(Schedule):
    """lr * factor ** floor(epoch / step_size): drops every ``step_size`` epochs."""

    spec = Component("step_decay", "`lr · factor^floor(epoch / step_size)`", (
        Param("step_size", 10, integer(1), "epochs between drops"),
        Param("factor", 0.5, number(0, 1, closed="neither"), "the factor of each drop"),
    ))

    def __call__(self, step, epoch):
        return self.initial * self.factor ** (epoch // self.step_size)


class CosineDecay(Schedule):
    """Keras's CosineDecay: from lr down to ``alpha * lr`` over ``decay_steps`` batches;
    ``decay_steps`` null (the default) means over the whole run."""

    spec = Component("cosine_decay", "from `lr` to `alpha·lr` along a half cosine over `decay_steps` batches", (
        Param("decay_steps", None, integer(1, nullable=True),
              "batches of the decay; null: the whole run (epochs × batches per epoch)"),
        Param("alpha", 0.0, number(0, 1), "the final rate's share of lr"),
    ), keras="CosineDecay")
    per_step = True

    def __init__(self, learning_rate, run_steps=None, **params):
        super().__init__(learning_rate, run_steps, **params)
        self.length = self.decay_steps or run_steps
        if not self.length:
            raise ValueError("cosine_decay without decay_steps needs the run's length (run_steps)")

    def __call__(self, step, epoch):
        progress = min(step, self.length) / self.length
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.initial * ((1.0 - self.alpha) * cosine + self.alpha)


class ReduceOnPlateau(Schedule):
    """Keras's ReduceLROnPlateau: multiply by ``factor`` after ``patience`` flat epochs."""

    spec = Component("reduce_on_plateau", "multiplied by `factor` after `patience` epochs without improvement", (
        Param("monitor", "val_loss", STRING, "the quantity watched: loss, a metric, or val_ + either"),
        Param("factor", 0.1, number(0, 1, closed="neither"), "the factor of each reduction"),
        Param("patience", 10, integer(0), "epochs without improvement before reducing"),
        Param("min_delta", 1e-4, number(0), "the smallest change that counts as an improvement"),
        Param("cooldown", 0, integer(0), "epochs to wait after a reduction"),
        Param("min_lr", 0.0, number(0), "the rate's floor"),
        Param("mode", "auto", choice(*MODES), "auto (accuracy-like metrics go up), min or max"),
    ), keras="ReduceLROnPlateau")

    def __init__(self, learning_rate, run_steps=None, **params):
        super().__init__(learning_rate, run_steps, **params)
        self.current = self.initial
        self.best = None
        self.wait = 0
        self.cooldown_left = 0

    def __call__(self, step, epoch):
        return self.current

    def on_epoch_end(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            return
        higher = higher_is_better(self.monitor, self.mode)
        improved = self.best is None or (
            value > self.best + self.min_delta if higher else value < self.best - self.min_delta)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if improved:
            self.best = value
            self.wait = 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait >= self.patience:
                self.current = max(self.current * self.factor, self.min_lr)
                self.cooldown_left = self.cooldown
                self.wait = 0

    def get_state(self):
        return {"current": self.current, "best": self.best, "wait": self.wait,
                "cooldown_left": self.cooldown_left}

    def set_state(self, state):
        self.current = state["current"]
        self.best = state["best"]
        self.wait = state["wait"]
        self.cooldown_left = state["cooldown_left"]


SCHEDULES = Registry("schedule", [Constant, ExponentialDecay, StepDecay, CosineDecay, ReduceOnPlateau])


def get(name):
    return SCHEDULES.lookup(name)

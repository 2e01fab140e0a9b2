"""TensorBoard event files of a run (``logging.tensorboard: true``, ``--tensorboard``).

Into ``RUN/tensorboard/``, with tensorboardX (an optional extra; no TensorFlow):

* scalars per epoch (step = epoch), one per history.csv column: ``loss``, ``val_loss``, the
  metrics, ``lr``, ``seconds``;
* histograms per epoch of each layer's weight arrays (``weights/<layer>/<kernel|bias|...>``)
  and of the norms of each trainable layer's gradient, one per batch
  (``gradient_norm/<layer>``; with training.processes > 1, the gradient of the first
  process's rows of each batch);
* text at step 0: the model summary ``mlp train`` prints and the resolved config.

A resumed run appends a new event file to the same folder that starts with a purge at its
first epoch (tensorboardX's ``purge_step``): TensorBoard then drops whatever an earlier file
wrote for that epoch and later (an epoch logged before the stop but after the saved state),
so each epoch is shown once, as the resumed run trained it. The gradient norms of an epoch
resumed part-way are those of the batches after the resume.
"""

import numpy as np

from mlpcli import runs
from mlpcli.config_yaml import dump_yaml
from mlpcli.errors import MlpError
from mlpcli.fit_loop import Callback

INSTALL_HINT = "logging.tensorboard needs tensorboardX: pip install 'mlpcli[tensorboard]'"


def summary_writer_class():
    """tensorboardX's SummaryWriter, or an MlpError naming the extra to install."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as exc:
        raise MlpError(f"{INSTALL_HINT} ({exc})") from None
    return SummaryWriter


class TensorBoardLog(Callback):
    """Writes the run's scalars, histograms and texts into ``folder/tensorboard/``."""

    def __init__(self, folder, summary, cfg):
        """``summary``: the model summary ``mlp train`` prints; ``cfg``: the run's config."""
        self.writer_class = summary_writer_class()
        self.path = folder / runs.TENSORBOARD_DIR
        self.summary, self.cfg = summary, cfg
        self.writer = None
        self.norms = {}  # {layer name: [gradient norm of each batch of the epoch]}

    def on_train_begin(self):
        trainer = self.loop.trainer
        texts = trainer.step == 0 or not self.path.exists()  # once per run (resumed with --tensorboard: then)
        # a resumed run purges what an earlier session logged from its first epoch on
        self.writer = self.writer_class(str(self.path), purge_step=trainer.epoch + 1 if trainer.epoch else None)
        if texts:
            self.writer.add_text("model_summary", _preformatted(self.summary), 0)
            self.writer.add_text("config", _preformatted(dump_yaml(self.cfg)), 0)
            self.writer.flush()

    def on_epoch_begin(self, epoch):
        self.norms = {}

    def on_batch_end(self, batch, logs):
        for layer in self.loop.model.layers:
            if layer.trainable and layer.grads:
                squares = sum(float(np.dot(g.ravel(), g.ravel())) for g in layer.grads)
                self.norms.setdefault(layer.name, []).append(squares ** 0.5)

    def on_epoch_end(self, epoch, logs):
        for key, value in logs.items():
            self.writer.add_scalar(key, value, epoch)
        for layer in self.loop.model.layers:
            for name, weights in zip(layer.weight_names, layer.params):
                self.writer.add_histogram(f"weights/{layer.name}/{name}", weights, epoch)
        for layer_name, norms in self.norms.items():
            self.writer.add_histogram(f"gradient_norm/{layer_name}", np.asarray(norms), epoch)
        self.writer.flush()  # readable while training goes on, and complete if it stops

    def on_train_end(self, results):
        self.writer.close()


def _preformatted(text):
    """``text`` as a Markdown code block (TensorBoard renders texts as Markdown)."""
    return "\n".join("    " + line for line in text.splitlines())

"""A small 1-D convolutional network for raw spectra, as scikit-learn estimators.

The talk's "deep learning on raw data" column: the network learns its own
features (line shapes, continuum slopes) from the pixels. It is deliberately
small (two convolution blocks, one hidden layer) so it trains on a CPU, and it
uses early stopping on an internal validation split because complex models
overfit more easily.

Architecture (``n_filters=(8, 16)``)::

    spectrum (standardised per object) → [Conv1d(k) → ReLU → MaxPool(pool)] × len(n_filters)
    → AdaptiveAvgPool(16) → Linear(hidden) → ReLU → Dropout → Linear(n_outputs)

PyTorch is imported only when a network is fitted or used; install it with
``pip install 'serendip[deep]'``. Learned weights are kept as NumPy arrays
(``state_``), so fitted estimators save with skops/joblib without torch objects.

The CPU is the default. ``device="cuda"`` (or ``"auto"``: CUDA when PyTorch sees a
GPU) trains and predicts on a GPU; the weights still come back as NumPy arrays, so a
network trained on a GPU predicts on a machine without one.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from .._logging import get_logger

__all__ = ["CNN1DClassifier", "CNN1DRegressor", "DeviceUnavailableError"]

log = get_logger(__name__)


def _torch(what: str = "the 1-D CNN"):
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{what} needs PyTorch: pip install 'serendip[deep]' "
                          "(the CPU build is enough)") from exc
    return torch


class DeviceUnavailableError(ValueError):
    """The asked-for device (e.g. ``"cuda"``) is not available to this PyTorch."""


def _resolve_device(torch, device) -> str:
    """The torch device string for ``device`` ("cpu", "cuda", "cuda:N" or "auto"), checked."""
    name = "auto" if device is None else str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device={name!r} was asked for, but this PyTorch ({torch.__version__}) sees no "
                               "CUDA GPU; use device='cpu' or 'auto'")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device={name!r} was asked for, but PyTorch sees only "
                               f"{torch.cuda.device_count()} CUDA device(s)")
        return name
    raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")


def _standardise_rows(X: np.ndarray) -> np.ndarray:
    """Subtract each spectrum's mean and divide by its standard deviation (flat spectra stay zero)."""
    X = np.asarray(X, dtype=np.float32)
    mu = X.mean(axis=1, keepdims=True)
    sd = X.std(axis=1, keepdims=True)
    sd[sd == 0] = 1.0
    return (X - mu) / sd


def _build(torch, n_features: int, n_out: int, n_filters, kernel_size: int, pool: int, hidden: int,
           dropout: float):
    nn = torch.nn
    layers = []
    c_in, length = 1, n_features
    for c_out in n_filters:
        layers += [nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2), nn.ReLU()]
        if length // pool >= 1 and pool > 1:
            layers.append(nn.MaxPool1d(pool))
            length //= pool
        c_in = c_out
    out_len = max(1, min(16, length))
    layers += [nn.AdaptiveAvgPool1d(out_len), nn.Flatten(), nn.Linear(c_in * out_len, hidden), nn.ReLU(),
               nn.Dropout(dropout), nn.Linear(hidden, n_out)]
    return nn.Sequential(*layers)


class _CNN1DBase(BaseEstimator):
    _classifier = False

    def __init__(self, n_filters=(8, 16), kernel_size: int = 9, pool: int = 4, hidden: int = 32,
                 dropout: float = 0.2, epochs: int = 40, batch_size: int = 64, learning_rate: float = 2e-3,
                 weight_decay: float = 1e-4, validation_fraction: float = 0.15, patience: int = 6,
                 class_weight: str | None = "balanced", n_threads: int | None = None, device: str = "cpu",
                 random_state=None, progress: bool = False):
        self.n_filters = n_filters
        self.kernel_size = kernel_size
        self.pool = pool
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.class_weight = class_weight
        self.n_threads = n_threads
        self.device = device
        self.random_state = random_state
        self.progress = progress

    # -- helpers ---------------------------------------------------------------------------
    def _module(self, torch, n_features=None, n_outputs=None, state=None):
        """The network: fresh for the given sizes, or (no sizes) the fitted one with its weights."""
        if n_features is None:
            n_features, n_outputs, state = self.n_features_in_, self.n_outputs_, self.state_
        net = _build(torch, n_features, n_outputs, tuple(self.n_filters), self.kernel_size,
                     self.pool, self.hidden, self.dropout)
        if state is not None:
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        return net

    def _encode_y(self, y):
        """``(encoded target, fitted attributes)``; the attributes are set only once training succeeds."""
        raise NotImplementedError

    def _loss(self, torch, y_enc, n_outputs):
        raise NotImplementedError

    def fit(self, X, y):
        """Train with Adam and early stopping on an internal validation split; returns self.

        There is no ``sample_weight`` (it used to be accepted and ignored); class
        imbalance is handled by ``class_weight``.
        """
        from sklearn.utils.validation import column_or_1d

        from .._logging import progress as _progress
        from .._validation import check_matrix

        torch = _torch()
        device = _resolve_device(torch, self.device)
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not (isinstance(self.class_weight, Mapping) or self.class_weight in ("balanced", None)):
            raise ValueError(f"class_weight must be 'balanced', None or a dict {{class: weight}}; got "
                             f"{self.class_weight!r}")
        X = check_matrix(X, name="X", dtype=np.float32, min_rows=2)
        y = column_or_1d(y, warn=True)  # a (n, 1) target would broadcast against the (n, 1) output
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        n_features = X.shape[1]
        y_enc, fitted = self._encode_y(y)
        rng = np.random.default_rng(self.random_state)
        seed = int(rng.integers(0, 2**31 - 1))
        old_threads = torch.get_num_threads()
        if self.n_threads:
            torch.set_num_threads(int(self.n_threads))
        # the caller's global torch random state is left as it was
        with torch.random.fork_rng(devices=[] if device == "cpu" else None):
            try:
                torch.manual_seed(seed)
                state, history = self._train(torch, device, X, y_enc, n_features, fitted["n_outputs_"], rng,
                                             seed, _progress, classes=fitted.get("classes_"))
            finally:
                torch.set_num_threads(old_threads)
        # attributes are set only now: a fit that fails leaves an earlier fit (or nothing) intact
        for key, value in fitted.items():
            setattr(self, key, value)
        self.n_features_in_ = n_features
        self.history_ = history
        self.state_ = state
        self.n_epochs_ = len(history)
        self.device_ = device
        log.info("CNN trained %d epochs, best validation loss %.4g", self.n_epochs_,
                 min(v for _, v in history) if history else float("nan"))
        return self

    def _train(self, torch, device, X, y_enc, n_features, n_outputs, rng, seed, _progress, classes=None):
        """Train a fresh network; returns its best weights (NumPy arrays) and the loss history."""
        Xs = _standardise_rows(X)
        idx = rng.permutation(X.shape[0])
        n_val = int(round(self.validation_fraction * X.shape[0])) if self.validation_fraction else 0
        n_val = n_val if X.shape[0] - n_val >= 2 and n_val >= 2 else 0
        va, tr = idx[:n_val], idx[n_val:]
        xt = torch.from_numpy(Xs[:, None, :])
        yt = torch.from_numpy(y_enc)
        net = self._module(torch, n_features, n_outputs).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        loss_fn = self._loss(torch, y_enc[tr], n_outputs, classes).to(device)
        # batches are cut on the host and copied over, so no copy of the whole set sits on the GPU
        on_device = (lambda t: t.to(device, non_blocking=True)) if device != "cpu" else (lambda t: t)
        best, best_state, bad = np.inf, None, 0
        history = []
        gen = torch.Generator().manual_seed(seed)
        for _epoch in _progress(range(self.epochs), desc="CNN epochs", enabled=self.progress):
            net.train()
            perm = torch.from_numpy(tr)[torch.randperm(tr.size, generator=gen)]
            total = 0.0
            for start in range(0, perm.numel(), self.batch_size):
                b = perm[start:start + self.batch_size]
                opt.zero_grad()
                loss = loss_fn(net(on_device(xt[b])), on_device(yt[b]))
                loss.backward()
                opt.step()
                total += float(loss.detach()) * b.numel()
            train_loss = total / tr.size
            if n_val:
                net.eval()
                with torch.no_grad():
                    val_loss = self._batched_loss(torch, net, loss_fn, xt, yt, va, on_device)
            else:
                val_loss = train_loss
            history.append((train_loss, val_loss))
            if val_loss < best - 1e-6:
                best, bad = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}, history

    def _batched_loss(self, torch, net, loss_fn, xt, yt, rows, on_device, chunk: int = 1024) -> float:
        """The loss over ``rows``: the network runs on chunks of inputs, the loss once on all outputs."""
        rows = torch.from_numpy(rows)
        out = torch.cat([net(on_device(xt[rows[s:s + chunk]])) for s in range(0, rows.numel(), chunk)])
        return float(loss_fn(out, on_device(yt[rows])))

    def _forward(self, X):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "state_")
        from .._validation import check_matrix

        torch = _torch()
        X = check_matrix(X, name="X", dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input (the pixels it was trained on)")
        try:
            device = _resolve_device(torch, self.device)
        except DeviceUnavailableError as exc:  # e.g. a model trained on a GPU, used where there is none
            log.warning("%s; predicting on the CPU instead", exc)
            device = "cpu"
        # building the network draws initial weights: leave the caller's random state as it was
        with torch.random.fork_rng(devices=[]):
            net = self._module(torch).to(device)
        net.eval()
        out = []
        xs = torch.from_numpy(_standardise_rows(X)[:, None, :])
        with torch.no_grad():
            for start in range(0, X.shape[0], 1024):
                out.append(net(xs[start:start + 1024].to(device)).cpu().numpy())
        return np.concatenate(out, axis=0)


class CNN1DClassifier(ClassifierMixin, _CNN1DBase):
    """Small 1-D CNN classifier for raw spectra (``pip install 'serendip[deep]'``).

    Parameters
    ----------
    n_filters : tuple of int
        Channels of each convolution block.
    kernel_size : int
        Convolution width in pixels.
    pool : int
        Max-pooling factor after each block.
    hidden : int
        Units of the dense layer.
    dropout : float
    epochs : int
        Maximum epochs (early stopping usually ends sooner).
    batch_size : int
    learning_rate, weight_decay : float
        Adam settings (weight decay is L2 regularisation).
    validation_fraction : float
        Share of the training rows held out for early stopping.
    patience : int
        Epochs without validation improvement before stopping.
    class_weight : {"balanced", None} or dict
        ``"balanced"`` weights the loss by inverse class frequency; a dict gives each class
        its weight (classes it does not name weigh 1).
    n_threads : int, optional
        PyTorch CPU threads while fitting (restored afterwards).
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where the network trains and predicts. ``"auto"`` takes CUDA when PyTorch
        sees a GPU and the CPU otherwise; ``"cuda"`` without a GPU is an error.
        Weights are stored as NumPy arrays either way, so a model trained on a
        GPU is saved, loaded and used on a CPU-only machine.
    random_state : int, optional
    progress : bool
        Show a bar over epochs.
    """

    _classifier = True

    def _encode_y(self, y):
        from sklearn.utils.multiclass import check_classification_targets

        check_classification_targets(y)  # a continuous target: "Unknown label type: continuous"
        classes, y_enc = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValueError("the CNN classifier needs at least two classes")
        return y_enc.astype(np.int64), {"classes_": classes, "n_outputs_": classes.size}

    def _loss(self, torch, y_enc, n_outputs, classes=None):
        weight = None
        if isinstance(self.class_weight, Mapping):  # scikit-learn's convention: a class not named weighs 1
            # classes named but absent from this y (a cross-validation fold without a rare class) are ignored
            w = np.array([float(self.class_weight.get(c, 1.0)) for c in classes.tolist()], dtype=np.float32)
            weight = torch.from_numpy(w)
        elif self.class_weight == "balanced":
            counts = np.bincount(y_enc, minlength=n_outputs).astype(np.float32)
            w = np.where(counts > 0, counts.sum() / (n_outputs * np.maximum(counts, 1)), 0.0)
            weight = torch.from_numpy(w.astype(np.float32))
        return torch.nn.CrossEntropyLoss(weight=weight)

    def predict_proba(self, X):
        """Class probabilities, columns in ``classes_`` order."""
        z = self._forward(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The most probable class of each spectrum."""
        z = self._forward(X)  # first: an unfitted model raises NotFittedError, not AttributeError
        return self.classes_[np.argmax(z, axis=1)]


class CNN1DRegressor(RegressorMixin, _CNN1DBase):
    """Small 1-D CNN regressor for raw spectra (targets are standardised internally).

    Parameters are those of :class:`CNN1DClassifier` (``class_weight`` is ignored).
    """

    def _encode_y(self, y):
        y = np.asarray(y, dtype=np.float64)
        if not np.all(np.isfinite(y)):
            raise ValueError("the regression target contains NaN or infinite values")
        mean, std = float(y.mean()), float(y.std() or 1.0)
        return ((y - mean) / std).astype(np.float32)[:, None], {"y_mean_": mean, "y_std_": std, "n_outputs_": 1}

    def _loss(self, torch, y_enc, n_outputs, classes=None):
        return torch.nn.MSELoss()

    def predict(self, X):
        """Predicted target values (float64: de-standardised after the float32 network)."""
        return self._forward(X)[:, 0].astype(np.float64) * self.y_std_ + self.y_mean_

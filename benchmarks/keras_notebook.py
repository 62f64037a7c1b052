"""The original Keras notebook as one program: the yardstick of ``benchmarks/start_to_exit.py``.

    pip install -e ".[keras-baseline]"   # TensorFlow: only this baseline needs it
    python benchmarks/keras_notebook.py DATA_DIR/mnist

What the notebook does, in its order: read MNIST (from the IDX files here: its own download needs the
internet), scale by /255 and flatten, train ``Dense(100, relu) -> Dense(10, sigmoid)`` with Adam and
sparse categorical cross-entropy for 5 epochs at batch 32, test, print the 10 probabilities of test
image 998 and draw the confusion matrix as a heatmap (``confusion_matrix.png`` in the working folder).
"""

import gzip
import sys
from pathlib import Path

import numpy as np


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip) -> uint8 array of its shape.

    Not ``mnistlab.data.files``: the yardstick stays the notebook alone, runnable in any Python with
    TensorFlow and NumPy, and pays none of mnistlab's imports.
    """
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    shape = np.frombuffer(data, ">u4", ndim, 4).astype(int)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main(root: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    x_train = read_idx(root / "train-images-idx3-ubyte.gz").reshape(-1, 784) / 255  # (60000, 784)
    y_train = read_idx(root / "train-labels-idx1-ubyte.gz")
    x_test = read_idx(root / "t10k-images-idx3-ubyte.gz").reshape(-1, 784) / 255  # (10000, 784)
    y_test = read_idx(root / "t10k-labels-idx1-ubyte.gz")

    model = tf.keras.Sequential(
        [
            tf.keras.Input((784,)),
            tf.keras.layers.Dense(100, activation="relu"),
            tf.keras.layers.Dense(10, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5, batch_size=32)
    _, accuracy = model.evaluate(x_test, y_test)
    print(f"test accuracy {accuracy:.4f}")
    print(model.predict(x_test[998:999]))  # the ten probabilities of test image 998, an 8

    predicted = np.argmax(model.predict(x_test), axis=1)
    cm = tf.math.confusion_matrix(labels=y_test, predictions=predicted).numpy()  # (10, 10)
    fig, ax = plt.subplots(figsize=(10, 7))
    ax.imshow(cm, cmap="Blues")
    for (i, j), n in np.ndenumerate(cm):
        ax.text(j, i, str(n), ha="center", va="center")
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Truth")
    fig.savefig("confusion_matrix.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

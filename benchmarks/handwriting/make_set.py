"""How uci-digits.npz was made (run once; needs scikit-learn, which ships the data).

The digits are the UCI "Optical Recognition of Handwritten Digits" set (E. Alpaydin and
C. Kaynak, 1998; CC BY 4.0): forms filled in by 43 people (not MNIST's NIST writers),
scanned as 32x32 bitmaps and reduced to 8x8 counts of ink (0-16). scikit-learn's copy
holds 1,797 of them. Stored as they are: uint8 x (1797, 8, 8), y (1797,).
"""

import numpy as np
from sklearn.datasets import load_digits

digits = load_digits()
np.savez_compressed("uci-digits.npz", x=digits.images.astype(np.uint8), y=digits.target.astype(np.uint8))

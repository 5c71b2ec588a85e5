"""keras_attention: attention layers, positional encodings, Transformer blocks
and NTM/DNC memory cells for Keras 3.

Example:

```python
import keras_attention as ka
ka.__version__
```
"""

__version__ = "0.1.0"

from keras_attention import generation  # noqa: E402,F401
from keras_attention import layers  # noqa: E402,F401
from keras_attention import models  # noqa: E402,F401
from keras_attention import ops  # noqa: E402,F401
from keras_attention import training  # noqa: E402,F401

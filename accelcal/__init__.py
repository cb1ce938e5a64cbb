"""accelcal: calibrate an accelerator node and plan Transformer inference on it.

    $ accelcal bench kernels --quick --out results/
    $ accelcal calibrate --quick --out profiles/my-node.yaml
    $ accelcal plan --profile profiles/my-node.yaml --model llama3-8b
"""

__version__ = "0.1.0"

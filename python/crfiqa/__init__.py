"""CR-FIQA: train, score and evaluate face image quality models on top of ``crfiqa_kernels``."""

"""Fused margin-softmax cross-entropy with CR-FIQA's class-center statistics (CCS / NNCCS)."""

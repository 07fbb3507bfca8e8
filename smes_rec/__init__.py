"""smes-rec: SMES sparse multi-task mixture-of-experts ranking on TorchRec."""

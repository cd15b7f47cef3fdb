"""Independent references for parity tests: a protobuf-runtime Caffe writer and a PyTorch DRIU."""

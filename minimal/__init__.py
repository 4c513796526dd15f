"""minimal: one small NumPy engine (autograd, conv, LSTM, Adam) and one demo per blog post."""

"""minimal: one small NumPy engine (autograd, conv, LSTM, Adam) and one demo per blog post.

Importing it changes nothing in the process; the command-line entry points tune it
(minimal/kernels/process.py).
"""

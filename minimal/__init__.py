"""minimal: one small NumPy engine (autograd, conv, LSTM, Adam) and one demo per blog post."""

from minimal.allocator import keep_freed_memory

keep_freed_memory()  # big temporaries are reused instead of page-faulting each step

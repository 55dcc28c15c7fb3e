"""Model implementations used by evalkit's in-process policies (π₀.₅ in PyTorch)."""

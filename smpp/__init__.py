"""SMPP transport: the codec, the worker that binds to an SMSC, and a built-in SMSC."""

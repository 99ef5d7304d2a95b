"""The domain: what an order, a code, a link, money and a text are, and the rules that decide.

Pure: it imports only the standard library (an import contract checks it), so every rule can be
read and tested without a database, Redis, Flask or an SMSC.
"""

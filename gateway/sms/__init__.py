"""Messaging role: the SQL outbox of SMS to send, their texts, and the providers that carry them."""

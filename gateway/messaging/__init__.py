"""The messaging role: SMS in (one entry for every carrier, viewers' commands) and the
providers that carry SMS out (the outbox relay to the SMPP stream, Twilio)."""

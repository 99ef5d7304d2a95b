"""The payment role (CN103530766A): wallets bound to phones, linked cards, holds, the ledger."""

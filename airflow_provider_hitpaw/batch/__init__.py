"""What the batch operator keeps besides its tasks: the items of a batch, the ledger of what was paid
for, the manifest of how each item ended, and the pace of submissions. No HTTP here: the hooks send."""

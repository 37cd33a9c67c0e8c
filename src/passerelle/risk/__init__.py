"""Re-identification risk of a release: quasi-identifiers, metrics, remedies and pictures."""

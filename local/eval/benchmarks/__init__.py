"""One module per benchmark (MMAU test-mini, MMSU)."""

"""The live dashboard `metasup up` serves (SPEC section 9): a thin shell over
`projections.panels`, started only by `streams.cli.up`."""

"""The demo desk: a simulated fleet on real prices, live (`metasup up --demo`) or in memory."""

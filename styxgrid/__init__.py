"""styxgrid: a high-throughput computing grid in which everything is a 9P file."""

"""ODH index."""

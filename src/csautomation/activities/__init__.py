"""Activity classes: the one place where I/O and connector errors meet workflows."""

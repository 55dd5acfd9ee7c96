"""Fake vendor servers: real HTTPS servers on 127.0.0.1 speaking the vendors' API shapes."""

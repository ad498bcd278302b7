"""Hardware constraints: memristive crossbar weight levels."""
